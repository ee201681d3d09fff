"""Tiled local attention on Keras's JAX backend: outputs and gradients (jax.grad of tfvit's tiles)
against dense masked attention written here in jax.numpy, N x N with a -inf outside the window, for
tiles that do not divide the grid and tiles larger than it; the same under jax.jit and bfloat16."""

from tests.jax import require_jax_backend

require_jax_backend()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfvit.layers.local import local_attention_1d, neighborhood_attention_2d  # noqa: E402


def clamped_window(p, length, k, d):
    subsequence = [x for x in range(length) if x % d == p % d]
    t = subsequence.index(p)
    start = min(max(t - k // 2, 0), len(subsequence) - k)
    return subsequence[start:start + k]


def neighborhood_bias_rows(grid, k, d):
    """(N, N) allowed mask and the row of the flattened (2k-1)^2 bias table of each allowed pair."""
    height, width = grid
    n = height * width
    allowed, rows = np.zeros((n, n), bool), np.zeros((n, n), np.int32)
    for query in range(n):
        qr, qc = divmod(query, width)
        for kr in clamped_window(qr, height, k, d):
            for kc in clamped_window(qc, width, k, d):
                allowed[query, kr * width + kc] = True
                rows[query, kr * width + kc] = ((kr - qr) // d + k - 1) * (2 * k - 1) + (kc - qc) // d + k - 1
    return allowed, rows


def dense(q, k, v, allowed, table=None, rows=None):
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if table is not None:
        logits = logits + jnp.reshape(table, (table.shape[0], -1))[:, rows]
    weights = jax.nn.softmax(jnp.where(allowed, logits, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v)


def loss_and_grads(fn, arrays, cotangent):
    return jax.value_and_grad(lambda *a: jnp.sum(fn(*a).astype(jnp.float32) * cotangent),
                              argnums=tuple(range(len(arrays))))(*arrays)


@pytest.mark.parametrize("grid, kernel_size, dilation, tile", [((7, 9), 3, 1, 2), ((11, 10), 5, 1, 4),
                                                               ((9, 9), 3, 2, 3), ((6, 7), 5, 1, 16)])
@pytest.mark.parametrize("jit", [False, True])
def test_tiles_and_gradients_equal_dense_masked_attention(grid, kernel_size, dilation, tile, jit):
    rng = np.random.default_rng(sum(grid) + tile)
    n = grid[0] * grid[1]
    q, k, v = (jnp.asarray(rng.normal(size=(2, 2, n, 4)), jnp.float32) for _ in range(3))
    side = 2 * kernel_size - 1
    table = jnp.asarray(rng.normal(size=(2, side, side)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(2, 2, n, 4)), jnp.float32)
    allowed, rows = neighborhood_bias_rows(grid, kernel_size, dilation)

    def tiled(q, k, v, t):
        return neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation, bias=t, tile=tile)

    tiled = jax.jit(tiled) if jit else tiled
    got = loss_and_grads(tiled, (q, k, v, table), cotangent)
    expected = loss_and_grads(lambda q, k, v, t: dense(q, k, v, allowed, t, rows), (q, k, v, table), cotangent)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)
    for g, e in zip(got[1], expected[1]):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=3e-5, rtol=1e-4)


@pytest.mark.parametrize("n, window, block", [(23, 9, 3), (10, 7, 16), (12, 5, 1)])
def test_band_blocks_and_gradients_equal_dense_masked_attention(n, window, block):
    rng = np.random.default_rng(n + block)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 2, n, 4)), jnp.float32) for _ in range(3))
    cotangent = jnp.asarray(rng.normal(size=(2, 2, n, 4)), jnp.float32)
    i = np.arange(n)
    allowed = np.abs(i[:, None] - i[None, :]) <= window // 2
    got = loss_and_grads(jax.jit(lambda q, k, v: local_attention_1d(q, k, v, window, block=block)), (q, k, v),
                         cotangent)
    expected = loss_and_grads(lambda q, k, v: dense(q, k, v, allowed), (q, k, v), cotangent)
    for g, e in zip(got[1], expected[1]):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=3e-5, rtol=1e-4)


def test_bfloat16_inputs_stay_close_to_float32():
    grid, kernel_size = (8, 8), 5
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(1, 2, 64, 8)), jnp.float32) for _ in range(3))
    full = neighborhood_attention_2d(q, k, v, grid, kernel_size, tile=3)
    low = neighborhood_attention_2d(*(t.astype(jnp.bfloat16) for t in (q, k, v)), grid, kernel_size, tile=3)
    assert low.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(low, np.float32), np.asarray(full), atol=4e-2)
