"""FAVOR+ (Choromanski et al. 2021) against numpy references written from the paper: exact softmax
attention for the approximation, and brute-force N x N kernel attention of the same random features
for the linear-time reorganisation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.layers import MultiHeadSelfAttention, TransformerBlock
from tfvit.layers.performer import PerformerAttention, favor_attention, random_projection
from tests import reference


def softmax_features(x, w):
    """Lemma 1 of the paper, no stabiliser, no epsilon: exp(w.x' - |x'|^2/2)/sqrt(m), x' = x d^-1/4."""
    x = x * x.shape[-1] ** -0.25
    return np.exp(x @ w.T - 0.5 * (x ** 2).sum(-1, keepdims=True)) / math.sqrt(w.shape[0])


def stabilised_softmax_features(x, w, eps, is_query):
    """As documented in favor_attention: the exponent shifted by its max over the query's own features, or
    over all keys and features; then / sqrt(m) + eps."""
    x = x * x.shape[-1] ** -0.25
    exponent = x @ w.T - 0.5 * (x ** 2).sum(-1, keepdims=True)
    shift = exponent.max(-1, keepdims=True) if is_query else exponent.max((-2, -1), keepdims=True)
    return np.exp(exponent - shift) / math.sqrt(w.shape[0]) + eps


def relu_features(x, w, eps=1e-3):
    return np.maximum(x @ w.T / math.sqrt(w.shape[0]), 0.0) + eps


def kernel_attention(phi_q, phi_k, v):
    """A_ij = phi(q_i).phi(k_j) / sum_j phi(q_i).phi(k_j), out = A v, one N x N matrix per head."""
    out = np.zeros(phi_q.shape[:-1] + (v.shape[-1],))
    for index in np.ndindex(*phi_q.shape[:-2]):
        a = phi_q[index] @ phi_k[index].T
        out[index] = (a / a.sum(-1, keepdims=True)) @ v[index]
    return out


def exact_softmax_attention(q, k, v):
    return reference.softmax(np.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])) @ v


def qkv(rng, shape, scale=1.0):
    return [rng.normal(0.0, s, size=shape) for s in (scale, scale, 1.0)]


# --- random_projection -------------------------------------------------------------------------------

def test_random_projection_is_seeded_orthogonal_in_blocks_with_chi_row_norms():
    w = random_projection(20, 8, seed=3)
    assert w.shape == (20, 8) and w.dtype == np.float32
    np.testing.assert_array_equal(w, random_projection(20, 8, seed=3))
    assert not np.allclose(w, random_projection(20, 8, seed=4))
    # Blocks of d rows (the last one cut to 20 - 16 = 4 rows): mutually orthogonal inside a block.
    for block in (w[:8], w[8:16], w[16:]):
        gram = block.astype(np.float64) @ block.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-5)
    # Rows across blocks are independent, hence not orthogonal.
    assert np.abs(w[:8] @ w[8:16].T).max() > 0.5
    # chi(d) lengths: E|w|^2 = d, Var|w|^2 = 2d, so the mean over 4096 rows is d +- 3 * sqrt(2d / 4096).
    d = 16
    sq = (random_projection(4096, d, seed=0).astype(np.float64) ** 2).sum(1)
    assert abs(sq.mean() - d) < 3 * math.sqrt(2 * d / 4096)
    assert abs(sq.var() - 2 * d) < 0.2 * 2 * d
    iid = random_projection(4096, d, seed=0, orthogonal=False).astype(np.float64)
    assert abs((iid ** 2).sum(1).mean() - d) < 3 * math.sqrt(2 * d / 4096)
    assert abs(iid.mean()) < 0.01 and abs(iid.std() - 1.0) < 0.01


# --- favor_attention ----------------------------------------------------------------------------------

def test_softmax_favor_is_an_estimate_of_softmax_attention_improving_with_features():
    """Relative Frobenius error against exact attention, 10 draws of W (8 heads each), q, k ~ N(0, 0.25^2)."""
    n, d, heads = 64, 64, 8
    sizes = (16, 32, 64, 128, 256)
    errors = {}
    for orthogonal in (True, False):
        per_size = []
        for m in sizes:
            errs = []
            for s in range(10):
                q, k, v = qkv(np.random.default_rng(s), (1, heads, n, d), scale=0.25)
                exact = exact_softmax_attention(q, k, v)
                w = random_projection(m, d, seed=100 + s, orthogonal=orthogonal)
                out = keras.ops.convert_to_numpy(
                    favor_attention(*(t.astype("float32") for t in (q, k, v)), w, kernel="softmax"))
                errs.extend(np.linalg.norm(out - exact, axis=(-2, -1)) / np.linalg.norm(exact, axis=(-2, -1)))
            per_size.append(float(np.mean(errs)))
        errors[orthogonal] = per_size
    print("relative error, m =", sizes, "orthogonal:", np.round(errors[True], 4), "iid:", np.round(errors[False], 4))
    for per_size in errors.values():
        assert all(a > b for a, b in zip(per_size, per_size[1:])), per_size  # falls with every doubling of m
        assert per_size[-1] < 0.5 * per_size[0]  # O(m^-1/2): 16x the features, ~1/4 the error
        assert per_size[-1] < 0.1
    for m, orth, iid in zip(sizes, errors[True], errors[False]):
        assert orth <= 1.05 * iid, (m, orth, iid)
        if m >= d:  # full orthogonal blocks: clearly lower variance
            assert orth < 0.9 * iid, (m, orth, iid)


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_softmax_favor_equals_brute_force_kernel_attention_of_the_same_features(scale):
    """The linear-time D^-1 phi(Q)(phi(K)^T V) equals the N x N computation, and the stabilisers cancel."""
    rng = np.random.default_rng(5)
    q, k, v = qkv(rng, (2, 3, 40, 16), scale=scale)
    w = random_projection(48, 16, seed=9)
    args = [t.astype("float32") for t in (q, k, v)]
    out = keras.ops.convert_to_numpy(favor_attention(*args, w, epsilon=0.0))
    np.testing.assert_allclose(out, kernel_attention(softmax_features(q, w), softmax_features(k, w), v),
                               rtol=1e-4, atol=1e-5)
    # With the default epsilon the features are the stabilised ones plus 1e-6, as documented.
    out = keras.ops.convert_to_numpy(favor_attention(*args, w))
    expected = kernel_attention(stabilised_softmax_features(q, w, 1e-6, True),
                                stabilised_softmax_features(k, w, 1e-6, False), v)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_softmax_favor_stays_finite_where_unstabilised_features_underflow():
    # |q'|^2 / 2 reaches hundreds: without stabilisers every float32 feature of many tokens is 0 (0 / 0).
    rng = np.random.default_rng(6)
    q, k, v = qkv(rng, (1, 2, 32, 16), scale=8.0)
    w = random_projection(32, 16, seed=1)
    assert (softmax_features(q.astype(np.float32), w) == 0).all(-1).mean() > 0.25
    out = keras.ops.convert_to_numpy(favor_attention(*(t.astype("float32") for t in (q, k, v)), w, epsilon=0.0))
    assert np.isfinite(out).all()
    expected = kernel_attention(softmax_features(q, w), softmax_features(k, w), v)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_relu_kernel_equals_brute_force_normalised_kernel_attention():
    rng = np.random.default_rng(7)
    q, k, v = qkv(rng, (2, 2, 30, 8))
    v = rng.normal(size=(2, 2, 30, 5))  # d_v may differ from d
    w = random_projection(24, 8, seed=2)
    out = keras.ops.convert_to_numpy(favor_attention(*(t.astype("float32") for t in (q, k, v)), w, kernel="relu"))
    assert out.shape == (2, 2, 30, 5)
    np.testing.assert_allclose(out, kernel_attention(relu_features(q, w), relu_features(k, w), v), atol=1e-5)


def test_favor_attention_computes_in_float32_and_returns_the_value_dtype(monkeypatch):
    seen = []
    original = keras.ops.exp
    monkeypatch.setattr(keras.ops, "exp", lambda x: seen.append(keras.backend.standardize_dtype(x.dtype))
                        or original(x))
    rng = np.random.default_rng(8)
    q, k, v = (t.astype("float16") for t in qkv(rng, (1, 2, 10, 8)))
    w = random_projection(16, 8, seed=0)
    out = favor_attention(q, k, v, w)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert seen == ["float32", "float32"]
    expected = kernel_attention(softmax_features(q.astype(np.float64), w), softmax_features(k.astype(np.float64), w),
                                v.astype(np.float64))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).astype(np.float64), expected, atol=5e-3)


def test_favor_attention_rejects_bad_arguments():
    x = np.zeros((1, 1, 4, 8), "float32")
    with pytest.raises(ValueError, match="kernel must be one of .*'gaussian'"):
        favor_attention(x, x, x, random_projection(4, 8, 0), kernel="gaussian")
    with pytest.raises(ValueError, match="projection must have shape .*head_dim=8.*\\(4, 6\\)"):
        favor_attention(x, x, x, random_projection(4, 6, 0))
    with pytest.raises(ValueError, match="epsilon"):
        favor_attention(x, x, x, random_projection(4, 8, 0), epsilon=-1.0)
    with pytest.raises(ValueError, match="num_features must be a positive integer, got 0"):
        random_projection(0, 8, 0)
    with pytest.raises(ValueError, match="head_dim must be a positive integer, got 0"):
        random_projection(4, 0, 0)


# --- PerformerAttention -------------------------------------------------------------------------------

def layer_reference(x, layer, kernel="softmax"):
    """Per-sequence numpy reference: timm's qkv split, brute-force kernel attention per head, proj."""
    w = reference.weights_of(layer)
    heads = layer.num_heads
    n, dim = x.shape
    q, k, v = reference.attention_heads(x, w, "", heads)
    features = softmax_features if kernel == "softmax" else relu_features
    out = kernel_attention(features(q, w["projection"]), features(k, w["projection"]), v)
    return out.transpose(1, 0, 2).reshape(n, dim) @ w["proj/kernel"] + w["proj/bias"]


@pytest.mark.parametrize("kernel", ["softmax", "relu"])
def test_layer_matches_per_head_reference(kernel):
    x = np.random.default_rng(10).normal(size=(2, 9, 12)).astype("float32")
    layer = PerformerAttention(3, kernel=kernel, num_features=16, seed=4)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 9, 12)
    assert sorted(reference.weights_of(layer)) == ["proj/bias", "proj/kernel", "projection", "qkv/bias", "qkv/kernel"]
    assert [w.path.split("/", 1)[1] for w in layer.trainable_weights] == \
           ["qkv/kernel", "qkv/bias", "proj/kernel", "proj/bias"]
    for b in range(2):
        np.testing.assert_allclose(out[b], layer_reference(x[b].astype(np.float64), layer, kernel), atol=1e-4)


def test_key_dim_sets_the_inner_width():
    layer = PerformerAttention(2, key_dim=5, num_features=7, seed=0)
    out = layer(np.ones((1, 3, 6), "float32"))
    assert out.shape == (1, 3, 6)
    assert tuple(layer.qkv.kernel.shape) == (6, 30) and tuple(layer.proj.kernel.shape) == (10, 6)
    assert tuple(layer.projection.shape) == (7, 5)


def _max_dims_at_least(graph, n):
    worst = 0
    for op in graph.get_operations():
        for t in op.outputs:
            if t.shape.rank:
                worst = max(worst, sum(1 for s in t.shape.as_list() if s is not None and s >= n))
    return worst


def test_no_n_by_n_tensor_at_4096_tokens():
    n, dim = 4096, 32
    layer = PerformerAttention(2, num_features=64, seed=0, redraw_interval=1)
    x = np.random.default_rng(11).normal(size=(1, n, dim)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (1, n, dim) and np.isfinite(out).all()
    for training in (False, True):
        graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(
            tf.TensorSpec((1, n, dim), tf.float32)).graph
        assert _max_dims_at_least(graph, n) == 1
    # The check sees an N x N matrix where there is one.
    exact = MultiHeadSelfAttention(2, use_fused_attention=False)
    exact.build((1, n, dim))
    graph = tf.function(exact).get_concrete_function(tf.TensorSpec((1, n, dim), tf.float32)).graph
    assert _max_dims_at_least(graph, n) == 2


def test_projection_is_seeded_and_kept_in_the_config():
    x = np.zeros((1, 4, 8), "float32")
    a, b = PerformerAttention(2, num_features=6, seed=7), PerformerAttention(2, num_features=6, seed=7)
    a(x), b(x)
    np.testing.assert_array_equal(a.projection.numpy(), b.projection.numpy())
    np.testing.assert_array_equal(a.projection.numpy(), random_projection(6, 4, seed=7))
    c, d = PerformerAttention(2, num_features=6), PerformerAttention(2, num_features=6)
    assert isinstance(c.seed, int) and c.seed != d.seed
    c(x)
    clone = PerformerAttention.from_config(c.get_config())
    clone(x)
    np.testing.assert_array_equal(clone.projection.numpy(), c.projection.numpy())


def test_redraw_only_in_training_every_interval_calls_deterministically():
    x = np.random.default_rng(12).normal(size=(2, 5, 8)).astype("float32")
    layer = PerformerAttention(2, num_features=6, redraw_interval=2, seed=3)
    layer(x)
    initial = layer.projection.numpy()
    for _ in range(3):
        layer(x), layer(x, training=False)
    np.testing.assert_array_equal(layer.projection.numpy(), initial)
    assert int(layer.redraw_counter.numpy()) == 0

    history = []
    for _ in range(4):
        layer(x, training=True)
        history.append(layer.projection.numpy())
    np.testing.assert_array_equal(history[0], initial)  # call 1 of 2
    assert not np.allclose(history[1], initial)  # call 2 redraws
    np.testing.assert_array_equal(history[2], history[1])
    assert not np.allclose(history[3], history[1])
    assert int(layer.redraw_counter.numpy()) == 4
    # A redraw is again orthogonal blocks (6 rows of one 4 x 4 block, then 2) with Gaussian-sized rows.
    for block in (history[1][:4], history[1][4:]):
        gram = block @ block.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4)
    # Inference uses the current projection and leaves it alone.
    layer(x, training=False)
    np.testing.assert_array_equal(layer.projection.numpy(), history[3])

    twin, other = (PerformerAttention(2, num_features=6, redraw_interval=2, seed=s) for s in (3, 4))
    for _ in range(4):
        twin(x, training=True), other(x, training=True)
    np.testing.assert_array_equal(twin.projection.numpy(), history[3])
    assert not np.allclose(other.projection.numpy(), history[3])


def test_redrawn_projection_is_gaussian_on_average():
    layer = PerformerAttention(1, num_features=512, redraw_interval=1, seed=0)
    layer(np.zeros((1, 2, 16), "float32"), training=True)
    w = layer.projection.numpy().astype(np.float64)
    sq = (w ** 2).sum(1)
    assert abs(sq.mean() - 16) < 4 * math.sqrt(2 * 16 / 512)
    assert abs(w.mean()) < 0.05


def test_keras_file_and_weights_keep_the_projection(tmp_path):
    x = np.random.default_rng(13).normal(size=(2, 6, 8)).astype("float32")
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, PerformerAttention(2, num_features=10, redraw_interval=1, name="attn")(inputs))
    layer = model.get_layer("attn")
    model(x, training=True)  # redraws: the saved projection is no longer the one the seed gives
    assert not np.allclose(layer.projection.numpy(), random_projection(10, 4, layer.seed))
    expected = model.predict(x, verbose=0)

    model.save(tmp_path / "performer.keras")
    loaded = keras.saving.load_model(tmp_path / "performer.keras")
    restored = loaded.get_layer("attn")
    np.testing.assert_array_equal(restored.projection.numpy(), layer.projection.numpy())
    assert restored.get_config() == layer.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)

    model.save_weights(tmp_path / "performer.weights.h5")
    fresh = keras.Model(inputs, PerformerAttention(2, num_features=10, redraw_interval=1, seed=99, name="attn")(inputs))
    fresh.load_weights(tmp_path / "performer.weights.h5")
    np.testing.assert_array_equal(fresh.get_layer("attn").projection.numpy(), layer.projection.numpy())
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)
    # Redraws go on from the saved counter: the reloaded model draws what the original would have.
    for _ in range(2):
        model(x, training=True), loaded(x, training=True)
        np.testing.assert_array_equal(restored.projection.numpy(), layer.projection.numpy())
    assert int(restored.redraw_counter.numpy()) == 3


def test_config_round_trip():
    layer = PerformerAttention(4, key_dim=3, kernel="relu", num_features=5, orthogonal=False, redraw_interval=7,
                               seed=11, qkv_bias=False, projection_dropout=0.1, name="attn")
    layer(np.zeros((1, 3, 8), "float32"))
    config = layer.get_config()
    for key, value in dict(num_heads=4, key_dim=3, kernel="relu", num_features=5, orthogonal=False,
                           redraw_interval=7, seed=11, qkv_bias=False, projection_dropout=0.1).items():
        assert config[key] == value
    assert PerformerAttention.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(PerformerAttention) == "tfvit>PerformerAttention"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is PerformerAttention and restored.get_config() == config


def test_plugs_into_transformer_block_and_trains():
    x = np.random.default_rng(14).normal(size=(2, 6, 8)).astype("float32")
    block = TransformerBlock(attention=PerformerAttention(2, num_features=16, redraw_interval=2, seed=0, name="attn"))
    block(x)
    assert all(w is not block.attn.projection for w in block.trainable_weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(block(x, training=True)))
    grads = tape.gradient(loss, block.trainable_weights)
    assert len(grads) == 12  # norm1, qkv, proj, norm2, fc1, fc2: kernel/gamma and bias/beta each
    for weight, grad in zip(block.trainable_weights, grads):
        assert grad is not None, weight.path
        grad = keras.ops.convert_to_numpy(grad)
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0, weight.path
    clone = TransformerBlock.from_config(block.get_config())
    assert isinstance(clone.attn, PerformerAttention) and clone.attn.seed == 0


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 4e-2)])
@pytest.mark.parametrize("kernel", ["softmax", "relu"])
def test_mixed_precision_matches_float32(policy, tolerance, kernel, monkeypatch):
    x = np.random.default_rng(15).normal(size=(2, 10, 16)).astype("float32")
    expected_layer = PerformerAttention(4, kernel=kernel, num_features=32, seed=1)
    expected = keras.ops.convert_to_numpy(expected_layer(x))
    keras.mixed_precision.set_global_policy(policy)
    layer = PerformerAttention(4, kernel=kernel, num_features=32, seed=2)
    layer(x)
    layer.set_weights(expected_layer.get_weights())
    seen = []
    original = keras.ops.exp
    monkeypatch.setattr(keras.ops, "exp", lambda t: seen.append(keras.backend.standardize_dtype(t.dtype))
                        or original(t))
    out = layer(x)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(out.dtype) == compute
    assert all(w.dtype == "float32" for w in layer.weights)
    assert seen == (["float32", "float32"] if kernel == "softmax" else [])
    out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=tolerance * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_heads=2, num_features=0), "num_features must be a positive integer, got 0"),
    (dict(num_heads=2, kernel="cosine"), "kernel must be one of .*'cosine'"),
    (dict(num_heads=0), "num_heads must be a positive integer, got 0"),
    (dict(num_heads=2, key_dim=0), "key_dim must be a positive integer, got 0"),
    (dict(num_heads=2, redraw_interval=-1), "redraw_interval must be a non-negative integer.*-1"),
    (dict(num_heads=2, seed=-3), "seed must be None or a non-negative integer, got -3"),
    (dict(num_heads=2, projection_dropout=1.0), "projection_dropout must be a float in \\[0, 1\\), got 1.0"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PerformerAttention(**kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="num_heads=5 does not divide dim=12"):
        PerformerAttention(5)(np.zeros((1, 4, 12), "float32"))
    with pytest.raises(ValueError, match="rank|tokens"):
        PerformerAttention(2)(np.zeros((1, 4, 4, 12), "float32"))
