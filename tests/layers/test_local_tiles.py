"""Tiled local attention: every tile and block size, and the gradients, against dense masked references.

The forward references are test_local.py's (the N x N allowed mask listed query by query from the
definitions, masked softmax in float64). The gradient reference is dense masked attention in float64
with TensorFlow's own derivative of it: N x N logits, a -inf outside the mask, the bias read from its
table one (query, key) pair at a time. It shares no code with the tiles, the gathers or their custom
gradients.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layers.test_local import band_mask, clamped_window, masked_attention, neighborhood_mask, qkv_arrays
from tfvit.layers.local import local_attention_1d, neighborhood_attention_2d
from tfvit.layers.local_tiles import grid_tiles
from tfvit.layers.static_gather import inverse_index, take_static


def bias_lookup(grid, k, d):
    """(N, N) row of the flattened (2k-1)^2 table for every allowed (query, key), -1 elsewhere."""
    height, width = grid
    allowed, _ = neighborhood_mask(grid, k, d)
    rows = np.full(allowed.shape, -1)
    for query, key in zip(*np.nonzero(allowed)):
        (qr, qc), (kr, kc) = divmod(query, width), divmod(key, width)
        rows[query, key] = ((kr - qr) // d + k - 1) * (2 * k - 1) + (kc - qc) // d + k - 1
    return allowed, rows


def dense_masked(q, k, v, allowed, table=None, rows=None):
    """Dense masked attention on tensors (float64): differentiable, N x N."""
    logits = tf.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if table is not None:
        flat = tf.reshape(table, (table.shape[0], -1))
        logits += tf.where(allowed, tf.gather(flat, np.maximum(rows, 0), axis=1), tf.zeros((), tf.float64))
    weights = tf.nn.softmax(tf.where(allowed, logits, tf.constant(-np.inf, tf.float64)), axis=-1)
    return tf.einsum("bhqk,bhkd->bhqd", weights, v)


def gradients(fn, arrays, cotangent, dtype):
    tensors = [tf.constant(a, dtype) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        loss = tf.reduce_sum(fn(*tensors) * tf.constant(cotangent, dtype))
    return [g.numpy() for g in tape.gradient(loss, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)]


# Odd grids, tiles that do not divide them, tiles larger than the grid, dilated subsequences of unequal
# length, and the kernel covering the grid.
CASES_2D = [
    ((7, 9), 3, 1, [1, 2, 4, 5, 16]),
    ((9, 7), 5, 1, [2, 3, 8]),
    ((11, 13), 7, 1, [3, 6, 64]),
    ((13, 10), 3, 3, [1, 2, 4]),
    ((7, 9), 3, 2, [2, 3, 5]),
    ((5, 5), 5, 1, [2, 4]),
]


@pytest.mark.parametrize("grid, kernel_size, dilation, tiles", CASES_2D)
def test_every_tile_gives_the_masked_dense_result_and_weights(grid, kernel_size, dilation, tiles):
    rng = np.random.default_rng(sum(grid) + kernel_size + dilation)
    heads, n = 2, grid[0] * grid[1]
    q, k, v = qkv_arrays(rng, (2, heads, n, 4))
    side = 2 * kernel_size - 1
    table = rng.normal(size=(heads, side, side)).astype("float32")
    allowed, bias = neighborhood_mask(grid, kernel_size, dilation, table)
    expected = masked_attention(q, k, v, allowed, bias)
    untiled_weights = None
    for tile in tiles:
        out, weights = neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation, bias=table,
                                                 return_weights=True, tile=tile)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, atol=1e-5, err_msg=f"tile {tile}")
        weights = keras.ops.convert_to_numpy(weights)
        assert weights.shape == (2, heads, n, kernel_size ** 2)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        if untiled_weights is None:
            untiled_weights = weights
        np.testing.assert_allclose(weights, untiled_weights, atol=1e-6, err_msg=f"tile {tile}")


@pytest.mark.parametrize("grid, kernel_size, dilation, tiles", CASES_2D)
def test_gradients_equal_the_dense_reference(grid, kernel_size, dilation, tiles):
    rng = np.random.default_rng(10 * sum(grid) + kernel_size)
    heads, n = 2, grid[0] * grid[1]
    q, k, v = qkv_arrays(rng, (2, heads, n, 4))
    side = 2 * kernel_size - 1
    table = rng.normal(size=(heads, side, side)).astype("float32")
    cotangent = rng.normal(size=(2, heads, n, 4))
    allowed, rows = bias_lookup(grid, kernel_size, dilation)
    expected = gradients(lambda q, k, v, t: dense_masked(q, k, v, allowed, t, rows),
                         [q, k, v, table], cotangent, tf.float64)
    for tile in tiles:
        got = gradients(lambda q, k, v, t: neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation, bias=t,
                                                                     tile=tile),
                        [q, k, v, table], cotangent, tf.float32)
        for name, g, e in zip("q k v bias".split(), got, expected):
            np.testing.assert_allclose(g, e, atol=2e-5, rtol=1e-4, err_msg=f"d{name}, tile {tile}")


def test_gradients_under_xla_equal_the_executor():
    grid, kernel_size, tile = (9, 11), 5, 4
    rng = np.random.default_rng(3)
    q, k, v = qkv_arrays(rng, (1, 2, 99, 8))
    table = rng.normal(size=(2, 9, 9)).astype("float32")
    cotangent = rng.normal(size=(1, 2, 99, 8)).astype("float32")

    def step(q, k, v, t):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v, t])
            out = neighborhood_attention_2d(q, k, v, grid, kernel_size, bias=t, tile=tile)
            banded = local_attention_1d(q, k, v, 7, block=2)
            loss = tf.reduce_sum((out + banded) * cotangent)
        return [out, banded] + tape.gradient(loss, [q, k, v, t])

    inputs = [tf.constant(a) for a in (q, k, v, table)]
    plain = tf.function(step)(*inputs)
    compiled = tf.function(step, jit_compile=True)(*inputs)
    for a, b in zip(plain, compiled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_gradient_reads_each_key_only_for_the_tiles_whose_windows_hold_it():
    """The gathers' gradients read a key once per tile that attends to it, no more: M, the reads per key,
    is the most tiles whose query windows (listed by brute force) cover one key, row tiles x column tiles."""
    for grid, k, tile in [((64, 64), 7, 8), ((33, 17), 5, 4), ((16, 16), 7, 6), ((12, 12), 3, 5)]:
        plan = grid_tiles(grid, k, 1, tile)
        reads = inverse_index(plan.keys, grid[0] * grid[1], plan.key_live).shape[1]
        expected = 1
        for length in grid:
            covering = np.zeros(length, int)
            for first in range(0, length, tile):
                covered = {p for query in range(first, min(first + tile, length))
                           for p in clamped_window(query, length, k, 1)}
                covering[sorted(covered)] += 1
            expected *= covering.max()
        assert reads == expected, (grid, k, tile)


# ------------------------------------------------------------------------------------------------------
# local_attention_1d blocks


@pytest.mark.parametrize("n, window, blocks", [(10, 3, [1, 2, 3, 7, 10, 16]), (23, 9, [1, 3, 4, 5, 9, 30]),
                                               (6, 11, [1, 2, 4, 8]), (17, 1, [1, 4])])
def test_every_block_gives_the_band_result_and_gradients(n, window, blocks):
    rng = np.random.default_rng(n + window)
    q, k, v = qkv_arrays(rng, (2, 3, n, 4))
    allowed = band_mask(n, window)
    expected = masked_attention(q, k, v, allowed)
    cotangent = rng.normal(size=(2, 3, n, 4))
    expected_grads = gradients(lambda q, k, v: dense_masked(q, k, v, allowed), [q, k, v], cotangent, tf.float64)
    for block in blocks:
        out = keras.ops.convert_to_numpy(local_attention_1d(q, k, v, window, block=block))
        np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=f"block {block}")
        got = gradients(lambda q, k, v: local_attention_1d(q, k, v, window, block=block), [q, k, v], cotangent,
                        tf.float32)
        for name, g, e in zip("qkv", got, expected_grads):
            np.testing.assert_allclose(g, e, atol=2e-5, rtol=1e-4, err_msg=f"d{name}, block {block}")


def test_band_blocks_with_the_length_known_only_at_run_time():
    rng = np.random.default_rng(5)
    spec = tf.TensorSpec((1, 2, None, 4), tf.float32)
    attend = tf.function(lambda q, k, v: local_attention_1d(q, k, v, 9, block=3), input_signature=[spec] * 3)
    for n in (1, 2, 5, 13, 31):
        q, k, v = qkv_arrays(rng, (1, 2, n, 4))
        np.testing.assert_allclose(attend(q, k, v).numpy(), masked_attention(q, k, v, band_mask(n, 9)), atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# take_static


def test_inverse_index_lists_every_read_and_skips_dead_ones():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 7, size=40)
    live = rng.random(40) < 0.7
    inverse = inverse_index(index, 9, live)
    for n in range(9):
        expected = sorted(i for i in range(40) if index[i] == n and live[i])
        assert sorted(i for i in inverse[n] if i != 40) == expected
    assert inverse.shape[1] == max(np.bincount(index[live], minlength=9))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_take_static_gradient_is_the_scatter_add(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 11, 4)).astype("float32")
    index = rng.integers(0, 11, size=30)
    live = rng.random(30) < 0.6
    upstream = rng.normal(size=(2, 3, 30, 4)) * live[None, None, :, None]  # zero where not live
    expected = np.zeros_like(x, dtype=np.float64)
    np.add.at(expected, (slice(None), slice(None), index), upstream)
    magnitude = np.zeros_like(expected)
    np.add.at(magnitude, (slice(None), slice(None), index), np.abs(upstream))
    for mask in (None, live):
        value = tf.constant(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(value)
            y = take_static(value, index, axis=2, live=mask)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.constant(upstream, tf.float32))
        np.testing.assert_array_equal(tf.cast(y, tf.float32).numpy(), tf.cast(tf.gather(value, index, axis=2),
                                                                                tf.float32).numpy())
        grad = tf.cast(tape.gradient(loss, value), tf.float64).numpy()
        # bfloat16 (8 significant bits): each term arrives rounded once and the float32 sum is rounded
        # once, so the error is at most 2^-8 of the terms' magnitude plus 2^-8 of the sum.
        bound = 1e-6 * magnitude if dtype == "float32" else 2 ** -8 * (magnitude + np.abs(expected))
        assert (np.abs(grad - expected) <= bound + 1e-7).all()
