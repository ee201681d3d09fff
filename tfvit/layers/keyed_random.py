"""Random numbers that depend on the example, not on how its batch was split.

Why: exact gradient accumulation (``tfvit.training.GradientAccumulationModel``) runs an effective
batch of B examples as N micro-batches. A layer that draws from a Keras ``SeedGenerator`` advances
its state at every call, so the micro-batches of one update draw other dropout and stochastic-depth
masks than the whole batch would, and accumulation stops being the large-batch update. tfvit's
stochastic layers (``Dropout``, ``DropPath``) instead draw

    u = U(s, t, e, j)  in [0, 1)

for layer seed s, optimizer update t (``optimizer.iterations`` before the update is applied),
example index e in the effective batch (global across ``tf.distribute`` replicas) and element
index j within that example's part of the tensor. Example e then gets the same mask whether it is
row e of the whole batch or row e - o of a micro-batch whose first example is o.

U is a counter-based generator built from the integer hash "lowbias32" (C. Wellons, "Prospecting
for hash functions", 2018), H on uint32:
    x ^= x >> 16;  x *= 0x7feb352d;  x ^= x >> 15;  x *= 0x846ca68b;  x ^= x >> 16
chained over the inputs, with the element index j written as (w, p): row w of the example's rows
(a window, say) and position p within the row:
    k   = H(H(s) ^ t)               one key per layer and update
    r_e = H(k ^ H(e))               one key per example
    q   = H(r_e ^ H(w))             one key per row
    U   = (H(q ^ p) >> 8) / 2^24
giving 24 random bits, a float32's whole mantissa; the keys are computed once per row, so each
element costs one xor and one hash. It is plain uint32 arithmetic in keras.ops, so
it traces under XLA, runs on JAX and draws the same numbers on every backend.

Who supplies (t, e): the train steps. tfvit's models (``ImageClassifier.train_step``) and
``GradientAccumulationModel`` (before each micro-batch) open ``example_keyed_draws(update,
first_example, num_examples)`` around their forward pass. A tensor of R rows drawn inside it is
read as example-major: R / num_examples consecutive rows per example (one row per example for
DropPath, the windows of one image for Swin's window attention). Outside such a scope (a custom
training loop, a plain ``keras.Model`` around tfvit layers) the layer's SeedGenerator advances as
in Keras and replaces t, and every row is its own example.
"""

import contextlib
import numbers
import threading

import keras
import numpy as np
from keras import ops

_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
_MANTISSA = 2.0 ** -24


def lowbias32(x):
    """The lowbias32 integer hash of a uint32 tensor (see the module docstring)."""
    m1, m2 = (ops.convert_to_tensor(np.uint32(m)) for m in _MULTIPLIERS)
    x = ops.bitwise_xor(x, ops.right_shift(x, np.uint32(16)))
    x = ops.multiply(x, m1)
    x = ops.bitwise_xor(x, ops.right_shift(x, np.uint32(15)))
    x = ops.multiply(x, m2)
    return ops.bitwise_xor(x, ops.right_shift(x, np.uint32(16)))


def _uint32(x):
    return ops.cast(x, "uint32")


def new_layer_seed(seed=None):
    """A layer's seed s, to be stored in its config: ``seed`` itself, else the next draw of the
    innermost ``layer_seeds_from`` scope, else one from numpy's global generator (which
    ``keras.utils.set_random_seed`` seeds)."""
    if seed is None:
        if _SEED_STREAMS.stack:
            return int(_SEED_STREAMS.stack[-1].integers(0, 2**31 - 1))
        return int(np.random.randint(0, 2**31 - 1))
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}.")
    return int(seed)


class _SeedStreams(threading.local):
    def __init__(self):
        self.stack = []


_SEED_STREAMS = _SeedStreams()


@contextlib.contextmanager
def layer_seeds_from(seed):
    """Layers created inside draw their seeds from ``np.random.default_rng(seed)``, in creation order.

    A model built from its constructor arguments (``from_config``, loading a ``.keras`` file) builds its
    layers again; with its own ``seed`` among those arguments, every stochastic layer gets the seed it
    had, and a reloaded model draws the masks the original would have drawn.
    """
    _SEED_STREAMS.stack.append(np.random.default_rng(seed))
    try:
        yield
    finally:
        _SEED_STREAMS.stack.pop()


class _Draws:
    def __init__(self, update, first_example, num_examples):
        self.update, self.first_example, self.num_examples = update, first_example, num_examples


class _Scopes(threading.local):
    # Thread-local: tf.distribute's MirroredStrategy traces each replica's step in its own thread.
    def __init__(self):
        self.stack = []


_SCOPES = _Scopes()


@contextlib.contextmanager
def example_keyed_draws(update, first_example, num_examples):
    """Within this scope, tfvit's stochastic layers key their draws on ``update`` (the optimizer's
    update count), and read the rows of the tensors they draw for as examples ``first_example``,
    ``first_example + 1``, ... of the effective batch, ``num_examples`` of them in this call."""
    _SCOPES.stack.append(_Draws(update, first_example, num_examples))
    try:
        yield
    finally:
        _SCOPES.stack.pop()


def active_scope():
    """The innermost ``example_keyed_draws`` scope, or None outside one."""
    return _SCOPES.stack[-1] if _SCOPES.stack else None


def current_update():
    """The update count of the active scope, or None outside one."""
    scope = active_scope()
    return None if scope is None else scope.update


def random_bits(shape, layer_seed, seed_generator):
    """uint32 draws of ``shape`` with 24 random low bits: U * 2^24 of the module docstring.

    The leading axis (a Python int or a scalar tensor) runs over the examples, example-major; the other
    axes are static. Inside ``example_keyed_draws`` the draws are those of (s, t, e, w, p); outside,
    ``seed_generator`` (a keras.random.SeedGenerator, advanced by this call) stands in for t. All the
    chaining happens on one key per row; each element costs one xor and one hash.
    """
    rows, rest = shape[0], tuple(int(d) for d in shape[1:])
    per_row = int(np.prod(rest, dtype=np.int64))
    scope = active_scope()
    key = lowbias32(ops.convert_to_tensor(np.uint32(layer_seed)))
    row = ops.arange(rows, dtype="int32")
    if scope is None:
        state = seed_generator.next()
        key = lowbias32(ops.bitwise_xor(lowbias32(ops.bitwise_xor(key, _uint32(state[0]))), _uint32(state[1])))
        example, within = row, ops.zeros_like(row)
    else:
        key = lowbias32(ops.bitwise_xor(key, _uint32(scope.update)))
        rows_per_example = ops.maximum(rows // scope.num_examples, 1)
        example = ops.cast(scope.first_example, "int32") + row // rows_per_example
        within = row % rows_per_example
    example_key = lowbias32(ops.bitwise_xor(key, lowbias32(_uint32(example))))
    row_key = lowbias32(ops.bitwise_xor(example_key, lowbias32(_uint32(within))))  # (rows,)
    element = np.arange(per_row, dtype=np.uint32)[None, :]  # a constant: TensorFlow has no uint32 range
    bits = lowbias32(ops.bitwise_xor(row_key[:, None], element))  # (rows, per_row)
    return ops.reshape(ops.right_shift(bits, np.uint32(8)), (rows, *rest))


def uniform(shape, layer_seed, seed_generator):
    """float32 uniforms U in [0, 1) of ``shape`` (see ``random_bits``)."""
    return ops.cast(random_bits(shape, layer_seed, seed_generator), "float32") * _MANTISSA


def keep_mask(shape, rate, layer_seed, seed_generator, dtype):
    """The inverted-dropout multiplier: 1 / (1 - rate) where U < 1 - rate, else 0, in ``dtype``.

    The test U < 1 - rate is done on the integers (U * 2^24 < ceil((1 - rate) 2^24), the same test
    exactly) and the multiplier cast once, so every example's mask is the same under every precision
    policy (a bfloat16 uniform would have 8 bits and bias the keep probability).
    """
    keep = 1.0 - rate
    threshold = np.uint32(np.ceil(keep * 2**24))
    kept = ops.less(random_bits(shape, layer_seed, seed_generator), threshold)
    return ops.where(kept, ops.cast(1.0 / keep, dtype), ops.cast(0.0, dtype))


def replica_first_example(local_batch):
    """Index in the global batch of this replica's first example under ``tf.distribute`` (0 on one
    device, and on JAX, whose train step sees the global batch); ``replica_slice``'s first value."""
    return replica_slice(local_batch)[0]


def replica_slice(local_batch):
    """(first, total): where this replica's ``local_batch`` examples start in the global batch under
    ``tf.distribute``, and the global batch's size ((0, local_batch) on one device and on JAX, whose
    train step sees the global batch).

    tf.distribute cuts a global batch into consecutive per-replica slices
    (``tfvit.training.distribution.replica_batches`` does so explicitly); their sizes can differ in a
    short last batch, so the offset is the sum of the sizes of the replicas before this one.
    """
    if keras.backend.backend() != "tensorflow":
        return 0, local_batch
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, local_batch
    sizes = context.all_gather(tf.reshape(tf.cast(local_batch, tf.int32), [1]), axis=0)
    before = tf.range(context.num_replicas_in_sync) < tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.reduce_sum(tf.where(before, sizes, 0)), tf.reduce_sum(sizes)


def optimizer_update(optimizer, optimizer_variables=None):
    """The optimizer's update count t: ``optimizer.iterations``, or its value among the stateless
    ``optimizer_variables`` of a JAX train step."""
    if optimizer_variables is None:
        return ops.convert_to_tensor(optimizer.iterations)
    for reference, value in zip(optimizer.variables, optimizer_variables):
        if reference is optimizer.iterations:
            return value
    raise ValueError("the optimizer's iterations counter is not among its variables.")
