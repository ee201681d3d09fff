"""Performer attention: FAVOR+ random features for linear-time softmax attention.

Choromanski et al. 2021, "Rethinking Attention with Performers" (ICLR). Softmax attention
softmax(Q K^T / sqrt(d)) V is approximated by replacing the kernel exp(q.k / sqrt(d)) with a dot product
of positive random features, exp(q'.k') = E_w[phi(q') phi(k')] with q' = q d^-1/4, k' = k d^-1/4 and
    phi(x) = exp(W x - |x|^2 / 2) / sqrt(m),   rows of W ~ N(0, I_d)   (lemma 1, "positive random features"),
and the product is reassociated (section 3):
    out = D^-1 (phi(Q) (phi(K)^T V)),   D = diag(phi(Q) (phi(K)^T 1_N)),
which costs O(N m d) time and memory instead of O(N^2 d): no N x N matrix is ever formed. Drawing the
rows of W in orthogonal blocks (section 4, "orthogonal random features") lowers the estimator's variance.
The stabilisers, epsilons and projection handling follow google-research/performer (fast_attention).
"""

import numbers

import keras
import numpy as np
from keras import ops

from tfvit import _validation as check
from tfvit.layers import keyed_random
from tfvit.layers.attention import FusedSelfAttention

KERNELS = ("softmax", "relu")
# Additive floors of the features (google-research's numerical stabilisers): tiny for the softmax
# features, whose exponentials stay positive anyway; 1e-3 for relu features, which are exactly 0 on
# half of the space, so that every token keeps some weight and the normaliser stays away from 0.
DEFAULT_EPSILON = {"softmax": 1e-6, "relu": 1e-3}
# The normaliser is a sum of non-negative products; clamping it at the smallest normal float32 only
# acts when it underflowed to (near) 0, where the numerator is 0 too, giving 0 instead of NaN.
_DENOMINATOR_FLOOR = float(np.finfo(np.float32).tiny)


def _check_kernel(kernel):
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    return kernel


def _check_seed(seed):
    if seed is None:
        return None
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}.")
    return int(seed)


def random_projection(num_features, head_dim, seed, orthogonal=True):
    """The (m, d) float32 matrix W of FAVOR+ random projections, drawn with ``np.random.default_rng(seed)``.

    Orthogonal (Choromanski et al. 2021, section 4): ceil(m / d) blocks, each the orthogonal factor Q of
    the QR decomposition of a d x d standard Gaussian matrix (columns' signs fixed by diag(R), which
    makes Q Haar-distributed), stacked and cut to m rows; row i is then rescaled to the norm of an
    independent N(0, I_d) vector (chi(d) lengths), so each row is marginally N(0, I_d) while rows of a
    block stay exactly orthogonal. Otherwise every row is i.i.d. N(0, I_d).
    Deterministic in ``seed`` (numpy only, no backend state).
    """
    m = check.positive_int("num_features", num_features)
    d = check.positive_int("head_dim", head_dim)
    rng = np.random.default_rng(_check_seed(seed))
    if not orthogonal:
        return rng.standard_normal((m, d)).astype(np.float32)
    blocks = []
    for _ in range(-(-m // d)):
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        signs = np.where(np.diag(r) < 0, -1.0, 1.0)
        blocks.append((q * signs).T)  # rows = the orthonormal columns of Q
    directions = np.concatenate(blocks, axis=0)[:m]
    lengths = np.linalg.norm(rng.standard_normal((m, d)), axis=1)
    return (directions * lengths[:, None]).astype(np.float32)


def _draw_projection(num_features, head_dim, orthogonal, seed_generator):
    """``random_projection`` in-graph with keras.random, for redraws during training."""
    m, d = num_features, head_dim
    if not orthogonal:
        return keras.random.normal((m, d), seed=seed_generator, dtype="float32")
    gaussian = keras.random.normal((-(-m // d), d, d), seed=seed_generator, dtype="float32")
    q, r = ops.linalg.qr(gaussian)
    signs = ops.where(ops.diagonal(r, axis1=-2, axis2=-1) < 0, -1.0, 1.0)
    directions = ops.transpose(q * signs[:, None, :], (0, 2, 1))
    directions = ops.reshape(directions, (-1, d))[:m]
    lengths = ops.norm(keras.random.normal((m, d), seed=seed_generator, dtype="float32"), axis=-1)
    return directions * lengths[:, None]


def _softmax_features(x, projection, epsilon, is_query):
    """phi(x) = exp(W x' - |x'|^2 / 2 - s) / sqrt(m) + epsilon with x' = x d^-1/4 (FAVOR+, lemma 1).

    The stabiliser s must cancel in the normalised attention: for a query it is the max over its own
    features (a per-query factor divides out of numerator and denominator alike); for keys it is one
    max over all keys and features of a (batch, head), constant along the key sequence (a per-key
    factor would reweight the keys). s includes -|x'|^2 / 2, so the largest feature is exactly
    1/sqrt(m) and large-norm tokens do not underflow to 0. Its gradient is stopped: the attention
    does not depend on it.
    """
    head_dim, num_features = x.shape[-1], projection.shape[0]
    x = x * (head_dim ** -0.25)
    exponent = ops.einsum("...nd,md->...nm", x, projection) - 0.5 * ops.sum(ops.square(x), axis=-1, keepdims=True)
    axes = -1 if is_query else (-2, -1)
    stabiliser = ops.stop_gradient(ops.max(exponent, axis=axes, keepdims=True))
    return ops.exp(exponent - stabiliser) * (num_features ** -0.5) + epsilon


def _relu_features(x, projection, epsilon):
    """phi(x) = relu(W x / sqrt(m)) + epsilon (the generalised-kernel ReLU features, section 2.3,
    as google-research's relu_kernel_transformation; relu is positively homogeneous, so no d^-1/4)."""
    num_features = projection.shape[0]
    return ops.relu(ops.einsum("...nd,md->...nm", x, projection) * (num_features ** -0.5)) + epsilon


def favor_attention(q, k, v, projection, kernel="softmax", epsilon=None):
    """Bidirectional FAVOR+ attention D^-1 phi(Q) (phi(K)^T V), D = diag(phi(Q) phi(K)^T 1).

    q, k: (..., N, d), v: (..., N, d_v) (typically (batch, heads, tokens, head_dim)); ``projection`` the
    (m, d) matrix W (``random_projection``), shared by all leading axes. ``kernel="softmax"`` estimates
    softmax(q k^T / sqrt(d)) v (Choromanski et al. 2021, lemma 1; the kernel estimate is unbiased for
    epsilon = 0); ``"relu"`` computes the attention of the kernel phi(q).phi(k) with
    phi(x) = relu(W x / sqrt(m)) + epsilon. ``epsilon`` is added to every feature (default 1e-6 for
    softmax, 1e-3 for relu). O(N m (d + d_v)) time and memory, never an N x N matrix. Features and sums
    run in float32 whatever the inputs' dtype (exponentials overflow in float16, and bfloat16 sums over
    the sequence lose the small terms); the output is cast back to v's dtype.
    """
    _check_kernel(kernel)
    if epsilon is None:
        epsilon = DEFAULT_EPSILON[kernel]
    if not isinstance(epsilon, numbers.Real) or isinstance(epsilon, bool) or epsilon < 0:
        raise ValueError(f"epsilon must be a non-negative float, got {epsilon!r}.")
    if len(projection.shape) != 2 or projection.shape[1] != q.shape[-1]:
        raise ValueError(
            f"projection must have shape (num_features, head_dim={q.shape[-1]}), got {tuple(projection.shape)}."
        )
    out_dtype = keras.backend.standardize_dtype(v.dtype)
    q, k, v, projection = (ops.cast(t, "float32") for t in (q, k, v, projection))
    if kernel == "softmax":
        phi_q = _softmax_features(q, projection, epsilon, is_query=True)
        phi_k = _softmax_features(k, projection, epsilon, is_query=False)
    else:
        phi_q = _relu_features(q, projection, epsilon)
        phi_k = _relu_features(k, projection, epsilon)
    context = ops.einsum("...nm,...ne->...me", phi_k, v)  # (..., m, d_v): the only cross-token product
    numerator = ops.einsum("...nm,...me->...ne", phi_q, context)
    denominator = ops.einsum("...nm,...m->...n", phi_q, ops.sum(phi_k, axis=-2))
    out = numerator / ops.maximum(denominator, _DENOMINATOR_FLOOR)[..., None]
    return ops.cast(out, out_dtype)


@keras.saving.register_keras_serializable(package="tfvit")
class PerformerAttention(FusedSelfAttention):
    """Multi-head self-attention over (B, N, D) tokens in O(N m D) with FAVOR+ (Choromanski et al. 2021).

    A drop-in for MultiHeadSelfAttention (timm names ``qkv``, ``proj``; qkv channels ordered
    (3, heads, key_dim)), whose per-head attention is ``favor_attention``. The (num_features, key_dim)
    projection W, shared by all heads, is a non-trainable float32 weight ``projection`` drawn at build
    from ``random_projection(num_features, key_dim, seed)``, so it is saved with the model; ``seed=None``
    draws a seed once (``keyed_random.new_layer_seed``: the model's seed stream, else numpy's global
    generator, which ``keras.utils.set_random_seed`` seeds) and the config keeps it.

    Args:
        num_heads: attention heads.
        key_dim: channels per head; defaults to D // num_heads (num_heads must divide D).
        kernel: "softmax" (unbiased estimate of softmax attention) or "relu".
        num_features: m, the number of random features.
        orthogonal: draw W in orthogonal blocks (lower variance) rather than i.i.d.
        redraw_interval: when > 0, W is redrawn every ``redraw_interval`` optimizer updates: the
            training calls of update t (``optimizer.iterations`` = t, counted from 0) use a fresh
            in-graph draw keyed to (``seed``, t + 1) when t + 1 is a multiple of the interval, else the
            W of the last redraw. Counting updates rather than calls, all micro-batches of one update
            under gradient accumulation share one W, as the whole batch would. The count comes from
            the train step (``tfvit.layers.keyed_random``); a training call outside one (a custom
            loop) counts itself as one update. The non-trainable int32 weight ``redraw_counter``,
            saved with the model, holds t + 1 of the last training call. Calls without ``training``
            never redraw. 0 keeps W fixed (and creates no counter).
        seed: seed of the initial W (numpy) and of the redraws (keras.random).
        qkv_bias: bias on the fused qkv projection.
        projection_dropout: dropout on the output projection.
    """

    def __init__(self, num_heads, key_dim=None, kernel="softmax", num_features=64, orthogonal=True,
                 redraw_interval=0, seed=None, qkv_bias=True, projection_dropout=0.0, **kwargs):
        super().__init__(num_heads, key_dim=key_dim, qkv_bias=qkv_bias, projection_dropout=projection_dropout,
                         **kwargs)
        self.kernel = _check_kernel(kernel)
        self.num_features = check.positive_int("num_features", num_features)
        self.orthogonal = bool(orthogonal)
        if not isinstance(redraw_interval, numbers.Integral) or isinstance(redraw_interval, bool) \
                or redraw_interval < 0:
            raise ValueError(f"redraw_interval must be a non-negative integer (0: never), got {redraw_interval!r}.")
        self.redraw_interval = int(redraw_interval)
        # Drawn once (keyed_random.new_layer_seed) and stored in the config, so that a reloaded or cloned
        # layer rebuilds the same W.
        self.seed = keyed_random.new_layer_seed(_check_seed(seed))
        self.seed_generator = keras.random.SeedGenerator(self.seed) if self.redraw_interval else None

    def build(self, input_shape):
        super().build(input_shape)
        initial = random_projection(self.num_features, self.head_dim, self.seed, self.orthogonal)
        # autocast=False: under mixed precision W must stay float32 (a float16 W would perturb every feature).
        self.projection = self.add_weight(
            name="projection", shape=initial.shape, dtype="float32", trainable=False, autocast=False,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(initial, dtype="float32"),
        )
        if self.redraw_interval:
            self.redraw_counter = self.add_weight(
                name="redraw_counter", shape=(), dtype="int32", trainable=False, initializer="zeros",
            )
        self.built = True

    def _projection_for_call(self, training):
        if not (training and self.redraw_interval):
            return self.projection.value
        update = keyed_random.current_update()
        if update is None:  # no train step around this call: each training call is an update
            count = self.redraw_counter.value + 1
        else:
            count = ops.cast(update, "int32") + 1
        # Key the draw to (seed, count), not to a SeedGenerator's running state: the count is saved (the
        # optimizer's iterations, or the counter), so a reloaded or resumed model draws the same projections.
        state = self.seed_generator.state
        state.assign(ops.stack([ops.cast(self.seed, state.dtype), ops.cast(2 * count, state.dtype)]))
        # The candidate is drawn on every training call and selected with `where` instead of drawing
        # inside a conditional: variable and seed updates inside a cond branch cannot be traced on JAX,
        # and the draw (ceil(m/d) QRs of d x d) is negligible next to the attention itself.
        fresh = _draw_projection(self.num_features, self.head_dim, self.orthogonal, self.seed_generator)
        projection = ops.where(ops.equal(count % self.redraw_interval, 0), fresh, self.projection.value)
        self.projection.assign(projection)
        self.redraw_counter.assign(count)
        return projection

    def call(self, x, training=None):
        q, k, v = self.split_heads(x)
        out = favor_attention(q, k, v, self._projection_for_call(training), kernel=self.kernel)
        return self.merge_heads(out, training)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel=self.kernel, num_features=self.num_features, orthogonal=self.orthogonal,
            redraw_interval=self.redraw_interval, seed=self.seed,
        )
        return config
