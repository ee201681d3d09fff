"""Neighborhood (2D, NATTEN) and band (1D) local attention against brute-force dense references.

The references build the full N x N "allowed" mask one query at a time, straight from the definitions
(the clamped window of each query found by listing its subsequence), and run a masked softmax in
float64; they share no code with tfvit.layers.local.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tfvit.layers import TransformerBlock, exact_attention
from tfvit.layers.local import (
    LocalAttention1D,
    NeighborhoodAttention2D,
    local_attention_1d,
    neighborhood_attention_2d,
    neighborhood_indices,
)


# ------------------------------------------------------------------------------------------------------
# Independent references.


def clamped_window(p, length, k, d):
    """Positions of the axis that position p attends to: list p's subsequence (same residue mod d) and
    take k consecutive members of it, centred on p but shifted inward to stay inside the subsequence."""
    subsequence = [x for x in range(length) if x % d == p % d]
    t = subsequence.index(p)
    start = min(max(t - k // 2, 0), len(subsequence) - k)
    return subsequence[start:start + k]


def neighborhood_mask(grid, k, d, table=None):
    """allowed (N, N) bool and, with a (heads, 2k-1, 2k-1) table, the additive bias (heads, N, N)."""
    height, width = grid
    n = height * width
    allowed = np.zeros((n, n), bool)
    bias = None if table is None else np.zeros((table.shape[0], n, n))
    for query in range(n):
        qr, qc = divmod(query, width)
        for kr in clamped_window(qr, height, k, d):
            for kc in clamped_window(qc, width, k, d):
                key = kr * width + kc
                allowed[query, key] = True
                if table is not None:
                    bias[:, query, key] = table[:, (kr - qr) // d + k - 1, (kc - qc) // d + k - 1]
    return allowed, bias


def masked_attention(q, k, v, allowed, bias=None):
    """softmax over the allowed keys of q.k / sqrt(d) (+ bias), times v; q, k, v (B, heads, N, d)."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            logits = q[b, h] @ k[b, h].T / math.sqrt(q.shape[-1])
            if bias is not None:
                logits = logits + bias[h]
            out[b, h] = reference.softmax(np.where(allowed, logits, -np.inf)) @ v[b, h]
    return out


def band_mask(n, window):
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.abs(i - j) <= window // 2


def layer_reference(x, layer, attend):
    """Project with the layer's own weights (timm order (3, heads, d)), attend, project back."""
    w = reference.weights_of(layer)
    batch, n, dim = x.shape
    heads = layer.num_heads
    qkv = (x.astype(np.float64) @ w["qkv/kernel"] + w["qkv/bias"]).reshape(batch, n, 3, heads, dim // heads)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    out = attend(q, k, v).transpose(0, 2, 1, 3).reshape(batch, n, dim)
    return out @ w["proj/kernel"] + w["proj/bias"]


def natten_window_start(index, length, kernel_size, dilation):
    """NATTEN's get_window_start (natten/csrc, CPU and CUDA kernels), transcribed."""
    nh = kernel_size // 2
    if dilation <= 1:
        return max(index - nh, 0) + (index + nh >= length) * (length - index - nh - 1)
    ni = index - nh * dilation
    if ni < 0:
        return index % dilation
    if index + nh * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * nh * dilation
        return a + imodd - kernel_size * dilation
    return ni


def natten_pb_start(index, length, kernel_size, dilation):
    """NATTEN's get_pb_start: row of the rpb table used by the first neighbour, transcribed."""
    nh = kernel_size // 2
    if dilation <= 1:
        return nh + (index < nh) * (nh - index) + (index + nh >= length) * (length - index - 1 - nh)
    if index - nh * dilation < 0:
        return kernel_size - 1 - (index // dilation)
    if index + nh * dilation >= length:
        return (length - index - 1) // dilation
    return nh


def qkv_arrays(rng, shape):
    return [rng.normal(size=shape).astype("float32") for _ in range(3)]


# ------------------------------------------------------------------------------------------------------
# neighborhood_attention_2d


@pytest.mark.parametrize(
    "grid, kernel_size, dilation",
    [
        ((5, 5), 1, 1),
        ((5, 5), 3, 1),
        ((7, 9), 3, 1),
        ((7, 9), 5, 1),
        ((9, 7), 7, 1),
        ((8, 8), 3, 2),    # every residue class has 4 members
        ((7, 9), 3, 2),    # uneven classes: along 7 rows, residue 0 has 4 members, residue 1 has 3
        ((13, 10), 3, 3),  # 13 rows: residue 0 has 5 members, 1 and 2 have 4
        ((9, 12), 1, 4),
    ],
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_neighborhood_attention_equals_masked_dense_reference(grid, kernel_size, dilation, with_bias):
    rng = np.random.default_rng(grid[0] * 100 + grid[1] * 10 + kernel_size + dilation)
    heads, n = 2, grid[0] * grid[1]
    q, k, v = qkv_arrays(rng, (2, heads, n, 4))
    side = 2 * kernel_size - 1
    table = rng.normal(size=(heads, side, side)).astype("float32") if with_bias else None
    out = neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation, bias=table)
    allowed, bias = neighborhood_mask(grid, kernel_size, dilation, table)
    assert (allowed.sum(1) == kernel_size ** 2).all()  # a full window for every query, borders included
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), masked_attention(q, k, v, allowed, bias), atol=1e-5)


def test_bias_table_may_be_flat():
    rng = np.random.default_rng(7)
    q, k, v = qkv_arrays(rng, (1, 3, 35, 4))
    table = rng.normal(size=(3, 5, 5)).astype("float32")
    square = neighborhood_attention_2d(q, k, v, (5, 7), 3, bias=table)
    flat = neighborhood_attention_2d(q, k, v, (5, 7), 3, bias=table.reshape(3, 25))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(square), keras.ops.convert_to_numpy(flat))


@pytest.mark.parametrize(
    "grid, kernel_size, dilation, query, rows, cols",
    [
        ((5, 5), 3, 1, (0, 0), [0, 1, 2], [0, 1, 2]),       # corner: full window shifted inward
        ((5, 5), 3, 1, (2, 4), [1, 2, 3], [2, 3, 4]),       # right edge
        ((5, 5), 3, 1, (2, 2), [1, 2, 3], [1, 2, 3]),       # interior: centred
        ((7, 9), 5, 1, (6, 1), [2, 3, 4, 5, 6], [0, 1, 2, 3, 4]),
        ((8, 8), 3, 2, (0, 0), [0, 2, 4], [0, 2, 4]),
        ((8, 8), 3, 2, (7, 6), [3, 5, 7], [2, 4, 6]),       # last of residues 1 and 0
        ((8, 8), 3, 2, (3, 4), [1, 3, 5], [2, 4, 6]),       # centred within its subsequence
        ((7, 7), 3, 2, (6, 5), [2, 4, 6], [1, 3, 5]),       # residue 0 of 7 has 4 members, 1 has 3
    ],
)
def test_border_queries_attend_to_the_hand_written_window(grid, kernel_size, dilation, query, rows, cols):
    # With v = identity (head_dim = N) the output row of a query is its attention distribution over all
    # N keys, so its support is exactly the neighbourhood.
    rng = np.random.default_rng(3)
    n = grid[0] * grid[1]
    q, k = (rng.normal(size=(1, 1, n, 4)).astype("float32") for _ in range(2))
    k = np.concatenate([k, np.zeros((1, 1, n, n - 4), "float32")], -1)
    q = np.concatenate([q, np.zeros((1, 1, n, n - 4), "float32")], -1) * math.sqrt(n / 4)  # undo the 1/sqrt(N)
    v = np.eye(n, dtype="float32")[None, None]
    dist = keras.ops.convert_to_numpy(neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation))[0, 0]
    row = dist[query[0] * grid[1] + query[1]]
    support = {divmod(int(j), grid[1]) for j in np.flatnonzero(row > 0)}
    assert support == {(r, c) for r in rows for c in cols}
    np.testing.assert_allclose(row.sum(), 1.0, atol=1e-6)


@pytest.mark.parametrize("side", [3, 5, 7])
def test_kernel_covering_the_grid_is_global_attention(side):
    rng = np.random.default_rng(side)
    q, k, v = qkv_arrays(rng, (2, 3, side * side, 8))
    out = neighborhood_attention_2d(q, k, v, (side, side), side)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(exact_attention(q, k, v)),
                               atol=1e-6)


def test_kernel_one_returns_v():
    rng = np.random.default_rng(11)
    q, k, v = qkv_arrays(rng, (2, 2, 20, 4))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(neighborhood_attention_2d(q, k, v, (4, 5), 1)), v, atol=1e-6)


def test_indices_follow_natten_window_and_bias_start():
    # One test over many cases: pure numpy, so no per-case Keras set-up.
    cases = [(length, k, d) for length in (7, 8, 9, 13, 16)
             for k, d in ((1, 1), (3, 1), (5, 1), (7, 1), (3, 2), (5, 2), (3, 3), (3, 4)) if k * d <= length]
    assert len(cases) == 32
    for length, k, d in cases:
        keys, bias = neighborhood_indices((length, length), k, d)
        side = 2 * k - 1
        slots = [(a, b) for a in range(k) for b in range(k)]
        start = [natten_window_start(i, length, k, d) for i in range(length)]
        pb = [natten_pb_start(i, length, k, d) for i in range(length)]
        for i in range(length):
            for j in range(length):
                assert list(keys[i * length + j]) == [(start[i] + a * d) * length + start[j] + b * d for a, b in slots]
                assert list(bias[i * length + j]) == [(pb[i] + a) * side + pb[j] + b for a, b in slots]


def test_neighborhood_attention_rejects_bad_arguments():
    q = np.zeros((1, 2, 64, 4), "float32")
    with pytest.raises(ValueError, match="kernel_size must be an odd positive integer.*got 4"):
        neighborhood_attention_2d(q, q, q, (8, 8), 4)
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        neighborhood_attention_2d(q, q, q, (8, 8), 0)
    with pytest.raises(ValueError, match=r"kernel_size \* dilation = 5 \* 2 = 10 exceeds.*grid \(8, 8\)"):
        neighborhood_attention_2d(q, q, q, (8, 8), 5, dilation=2)
    with pytest.raises(ValueError, match=r"kernel_size \* dilation = 5 \* 1 = 5 exceeds.*grid \(4, 16\)"):
        neighborhood_attention_2d(q, q, q, (4, 16), 5)
    with pytest.raises(ValueError, match="dilation must be a positive integer, got 0"):
        neighborhood_attention_2d(q, q, q, (8, 8), 3, dilation=0)
    with pytest.raises(ValueError, match=r"grid \(7, 7\) holds 49 tokens, but q has 64"):
        neighborhood_attention_2d(q, q, q, (7, 7), 3)
    with pytest.raises(ValueError, match=r"bias must have shape.*\(2, 5, 5\).*got \(2, 3, 3\)"):
        neighborhood_attention_2d(q, q, q, (8, 8), 3, bias=np.zeros((2, 3, 3), "float32"))
    with pytest.raises(ValueError, match="rank 4"):
        neighborhood_attention_2d(q[0], q[0], q[0], (8, 8), 3)


# ------------------------------------------------------------------------------------------------------
# local_attention_1d


@pytest.mark.parametrize("n, window", [(10, 1), (10, 3), (10, 7), (9, 5), (12, 21)])
def test_local_attention_1d_equals_band_masked_reference(n, window):
    rng = np.random.default_rng(n * 10 + window)
    q, k, v = qkv_arrays(rng, (2, 3, n, 4))
    out = keras.ops.convert_to_numpy(local_attention_1d(q, k, v, window))
    np.testing.assert_allclose(out, masked_attention(q, k, v, band_mask(n, window)), atol=1e-5)


@pytest.mark.parametrize("n, window", [(6, 11), (6, 31), (2, 3)])
def test_wide_band_is_global_attention(n, window):
    rng = np.random.default_rng(n + window)
    q, k, v = qkv_arrays(rng, (2, 2, n, 4))
    out, weights = local_attention_1d(q, k, v, window, return_weights=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(exact_attention(q, k, v)),
                               atol=1e-6)
    assert weights.shape[-1] == min(window, 2 * n - 1)  # slots past 2N - 1 could never hold a key


def test_local_attention_1d_rejects_bad_window():
    q = np.zeros((1, 1, 5, 4), "float32")
    for window in (2, 0, -3, 2.5):
        with pytest.raises(ValueError, match=f"window must be an odd positive integer.*got {window}"):
            local_attention_1d(q, q, q, window)


# ------------------------------------------------------------------------------------------------------
# Layers


@pytest.mark.parametrize(
    "grid_size, tokens, kernel_size, dilation",
    [(None, 49, 5, 1), ((6, 8), 48, 3, 2), ((5, 9), 45, 3, 1)],
)
def test_neighborhood_layer_equals_reference_on_its_own_projections(grid_size, tokens, kernel_size, dilation):
    rng = np.random.default_rng(tokens)
    x = rng.normal(size=(2, tokens, 12)).astype("float32")
    layer = NeighborhoodAttention2D(3, kernel_size, dilation=dilation, grid_size=grid_size)
    layer(x)
    side = 2 * kernel_size - 1
    assert layer.rpb.shape == (3, side, side)
    assert [w.path.split("/", 1)[1] for w in layer.weights] == ["rpb", "qkv/kernel", "qkv/bias", "proj/kernel",
                                                                 "proj/bias"]
    # Randomise the table so a wrong index or a dropped bias cannot hide behind 0.02-sized values.
    layer.rpb.assign(rng.normal(size=layer.rpb.shape).astype("float32"))
    out = keras.ops.convert_to_numpy(layer(x))
    grid = grid_size or (7, 7)
    allowed, bias = neighborhood_mask(grid, kernel_size, dilation, layer.rpb.numpy())
    expected = layer_reference(x, layer, lambda q, k, v: masked_attention(q, k, v, allowed, bias))
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # and the bias matters: without it the reference is far from the output
    unbiased = layer_reference(x, layer, lambda q, k, v: masked_attention(q, k, v, allowed))
    assert np.abs(out - unbiased).max() > 1e-2


def test_neighborhood_layer_without_bias():
    x = np.random.default_rng(5).normal(size=(1, 36, 8)).astype("float32")
    layer = NeighborhoodAttention2D(2, 3, use_relative_position_bias=False, qkv_bias=False)
    out = keras.ops.convert_to_numpy(layer(x))
    assert [w.path.split("/", 1)[1] for w in layer.weights] == ["qkv/kernel", "proj/kernel", "proj/bias"]
    w = reference.weights_of(layer)
    qkv = (x[0].astype(np.float64) @ w["qkv/kernel"]).reshape(36, 3, 2, 4)
    q, k, v = (qkv[None, :, i].transpose(0, 2, 1, 3) for i in range(3))
    attended = masked_attention(q, k, v, neighborhood_mask((6, 6), 3, 1)[0])
    expected = attended[0].transpose(1, 0, 2).reshape(36, 8) @ w["proj/kernel"] + w["proj/bias"]
    np.testing.assert_allclose(out[0], expected, atol=1e-4)


def test_local_layer_equals_reference_and_accepts_any_length():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    layer = LocalAttention1D(2, 5)
    out = keras.ops.convert_to_numpy(layer(x))
    expected = layer_reference(x, layer, lambda q, k, v: masked_attention(q, k, v, band_mask(11, 5)))
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # A model with an unknown sequence length builds its gather indices at run time.
    inputs = keras.Input((None, 8))
    model = keras.Model(inputs, layer(inputs))
    for n in (3, 11):
        x_n = rng.normal(size=(1, n, 8)).astype("float32")
        expected = layer_reference(x_n, layer, lambda q, k, v: masked_attention(q, k, v, band_mask(n, 5)))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x_n)), expected, atol=1e-4)


@pytest.mark.parametrize(
    "make",
    [lambda: NeighborhoodAttention2D(2, 3, dilation=2, name="attn"), lambda: LocalAttention1D(2, 7, name="attn")],
    ids=["neighborhood", "local"],
)
def test_transformer_block_trains_every_weight(make):
    x = np.random.default_rng(2).normal(size=(2, 64, 8)).astype("float32")
    block = TransformerBlock(attention=make(), mlp_ratio=2.0)
    block(x)
    if isinstance(block.attn, NeighborhoodAttention2D):
        assert block.attn.grid == (8, 8)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(x) ** 2)
    grads = tape.gradient(loss, block.trainable_weights)
    names = [w.path for w in block.trainable_weights]
    assert any(name.endswith("attn/qkv/kernel") for name in names)
    assert any(name.endswith("attn/proj/kernel") for name in names)
    assert any(name.endswith("attn/rpb") for name in names) == isinstance(block.attn, NeighborhoodAttention2D)
    for name, grad in zip(names, grads):
        assert grad is not None, name
        assert np.abs(tf.convert_to_tensor(grad).numpy()).max() > 0, name


def test_save_load_and_config_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    inputs = keras.Input((48, 8))
    hidden = TransformerBlock(attention=NeighborhoodAttention2D(2, 3, dilation=2, grid_size=(6, 8), name="attn"),
                              name="block")(inputs)
    outputs = LocalAttention1D(4, 5, qkv_bias=False, projection_dropout=0.1, name="band")(hidden)
    model = keras.Model(inputs, outputs)
    rpb = model.get_layer("block").attn.rpb
    rpb.assign(rng.normal(size=rpb.shape).astype("float32"))
    x = rng.normal(size=(2, 48, 8)).astype("float32")
    path = str(tmp_path / "local.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)

    for layer, expected in [
        (model.get_layer("block").attn, dict(num_heads=2, kernel_size=3, dilation=2, grid_size=(6, 8),
                                             use_relative_position_bias=True, qkv_bias=True, projection_dropout=0.0)),
        (model.get_layer("band"), dict(num_heads=4, window=5, qkv_bias=False, projection_dropout=0.1)),
    ]:
        config = layer.get_config()
        assert {key: config[key] for key in expected} == expected
        assert type(layer).from_config(config).get_config() == config
        name = keras.saving.get_registered_name(type(layer))
        assert name == f"tfvit>{type(layer).__name__}"
        restored_layer = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored_layer) is type(layer) and restored_layer.get_config() == config


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 4e-2)])
@pytest.mark.parametrize(
    "make, tokens",
    [(lambda: NeighborhoodAttention2D(2, 3, dilation=2, grid_size=(6, 7)), 42), (lambda: LocalAttention1D(2, 5), 42)],
    ids=["neighborhood", "local"],
)
def test_mixed_precision_is_finite_and_close_to_float32(make, tokens, policy, tolerance):
    def randomise_bias(layer):  # a large bias makes a low-precision bias path visible
        if isinstance(layer, NeighborhoodAttention2D):
            layer.rpb.assign(np.random.default_rng(1).normal(size=layer.rpb.shape).astype("float32"))

    x = np.random.default_rng(6).normal(size=(2, tokens, 8)).astype("float32")
    reference.check_mixed_precision(make, x, policy, tolerance, prepare=randomise_bias)


def test_softmax_runs_in_float32_under_mixed_precision(monkeypatch):
    seen = []
    original = keras.ops.softmax

    def spy(x, *args, **kwargs):
        seen.append(keras.backend.standardize_dtype(x.dtype))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(keras.ops, "softmax", spy)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x = np.zeros((1, 25, 8), "float32")
    NeighborhoodAttention2D(2, 3)(x)
    LocalAttention1D(2, 3)(x)
    assert seen == ["float32", "float32"]


def traced_shapes(fn, *specs):
    """(op name, static shape) of every tensor in fn's traced graph; an unknown rank reads as None."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return [(op.name, out.shape.as_list() if out.shape.rank is not None else None)
            for op in graph.get_operations() for out in op.outputs]


def test_no_n_by_n_tensor_at_4096_tokens():
    n, dim = 64 * 64, 16
    layer = NeighborhoodAttention2D(2, 7, name="na")
    band = LocalAttention1D(2, 15, name="band")
    x = np.random.default_rng(8).normal(size=(1, n, dim)).astype("float32")
    out = layer(x)  # runs (and builds) at N = 4096
    assert out.shape == (1, n, dim) and np.isfinite(keras.ops.convert_to_numpy(out)).all()
    band(x)

    def forward_backward(t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(band(layer(t)) ** 2)
        return tape.gradient(loss, layer.trainable_weights + band.trainable_weights)

    tensors = traced_shapes(forward_backward, tf.TensorSpec((1, n, dim), "float32"))
    assert len(tensors) > 50  # the graph really was traced
    assert all(shape is not None for _, shape in tensors)  # every shape is static, so the check below is total
    # An N x N matrix (of any batch/head layout) would have two axes of size >= N; gathers have one.
    offenders = [(name, shape) for name, shape in tensors if sum(1 for s in shape if s is not None and s >= n) >= 2]
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------------------
# Layer arguments


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size must be an odd positive integer.*got 6"):
        NeighborhoodAttention2D(2, 6)
    with pytest.raises(ValueError, match="dilation must be a positive integer"):
        NeighborhoodAttention2D(2, 3, dilation=0)
    with pytest.raises(ValueError, match=r"kernel_size \* dilation = 3 \* 3 = 9 exceeds.*grid \(8, 8\)"):
        NeighborhoodAttention2D(2, 3, dilation=3, grid_size=8)
    with pytest.raises(ValueError, match=r"kernel_size \* dilation = 7 \* 1 = 7 exceeds.*grid \(5, 5\)"):
        NeighborhoodAttention2D(2, 7)(np.zeros((1, 25, 8), "float32"))  # inferred grid too small
    with pytest.raises(ValueError, match="grid_size=None needs a square number of tokens.*got 48"):
        NeighborhoodAttention2D(2, 3)(np.zeros((1, 48, 8), "float32"))
    with pytest.raises(ValueError, match=r"grid_size=\(6, 7\) holds 42 tokens, got 48"):
        NeighborhoodAttention2D(2, 3, grid_size=(6, 7))(np.zeros((1, 48, 8), "float32"))
    with pytest.raises(ValueError, match="num_heads=3 does not divide dim=8"):
        NeighborhoodAttention2D(3, 3)(np.zeros((1, 36, 8), "float32"))
    with pytest.raises(ValueError, match="num_heads=3 does not divide dim=8"):
        LocalAttention1D(3, 3)(np.zeros((1, 36, 8), "float32"))
    with pytest.raises(ValueError, match="window must be an odd positive integer.*got 4"):
        LocalAttention1D(2, 4)
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        LocalAttention1D(0, 3)
    with pytest.raises(ValueError, match="projection_dropout"):
        NeighborhoodAttention2D(2, 3, projection_dropout=1.5)
    with pytest.raises(ValueError, match="tokens of shape"):
        NeighborhoodAttention2D(2, 3)(np.zeros((1, 6, 6, 8), "float32"))
