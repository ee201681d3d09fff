"""Brute-force numpy references for the tests: written from the papers' equations, sharing no code
with tfvit, looping where tfvit vectorises."""

import math

import numpy as np


def weights_of(layer):
    """{variable path relative to the layer: numpy value}."""
    prefix = layer.path + "/"
    return {w.path[len(prefix):] if w.path.startswith(prefix) else w.path: np.asarray(w.numpy(), np.float64)
            for w in layer.weights}


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def mlp(x, w, prefix):
    h = gelu(x @ w[f"{prefix}fc1/kernel"] + w[f"{prefix}fc1/bias"])
    return h @ w[f"{prefix}fc2/kernel"] + w[f"{prefix}fc2/bias"]


def attention_heads(x, w, prefix, heads):
    """q, k, v of shape (heads, N, d) for one sequence x (N, D), timm's qkv channel order (3, heads, d)."""
    n, dim = x.shape
    qkv = x @ w[f"{prefix}qkv/kernel"] + w[f"{prefix}qkv/bias"]
    qkv = qkv.reshape(n, 3, heads, dim // heads)
    return [qkv[:, i].transpose(1, 0, 2) for i in range(3)]


def global_attention(x, w, prefix, heads):
    """Multi-head self-attention of one sequence x (N, D), one head at a time."""
    n, dim = x.shape
    q, k, v = attention_heads(x, w, prefix, heads)
    d = dim // heads
    out = np.zeros((n, dim))
    for h in range(heads):
        a = softmax(q[h] @ k[h].T / math.sqrt(d))
        out[:, h * d:(h + 1) * d] = a @ v[h]
    return out @ w[f"{prefix}proj/kernel"] + w[f"{prefix}proj/bias"]


def vit_block(x, w, prefix, heads, eps=1e-6):
    x = x + global_attention(layer_norm(x, w[f"{prefix}norm1/gamma"], w[f"{prefix}norm1/beta"], eps), w,
                             f"{prefix}attn/", heads)
    return x + mlp(layer_norm(x, w[f"{prefix}norm2/gamma"], w[f"{prefix}norm2/beta"], eps), w, f"{prefix}mlp/")


def swin_attention(grid, w, prefix, heads, window, shift):
    """Shifted-window attention of one (H, W, C) grid as full attention over the padded, rolled grid.

    Every token of the padded grid attends to every other; a pair is allowed when both lie in the same
    window and, along each axis, both or neither wrapped around in the cyclic shift (the region mask
    stated directly rather than from the official slices). The bias is looked up from the table by the
    pair's offset inside the window.
    """
    height, width, dim = grid.shape
    hp, wp = -(-height // window) * window, -(-width // window) * window
    padded = np.zeros((hp, wp, dim))
    padded[:height, :width] = grid
    rolled = np.roll(padded, (-shift, -shift), axis=(0, 1))
    tokens = rolled.reshape(hp * wp, dim)
    rows, cols = np.divmod(np.arange(hp * wp), wp)
    q, k, v = attention_heads(tokens, w, prefix, heads)
    d = dim // heads
    table = w[f"{prefix}relative_position_bias_table"]
    n = hp * wp
    logits = np.zeros((heads, n, n))
    allowed = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            same_window = rows[i] // window == rows[j] // window and cols[i] // window == cols[j] // window
            same_region = (shift == 0) or (
                (rows[i] >= hp - shift) == (rows[j] >= hp - shift)
                and (cols[i] >= wp - shift) == (cols[j] >= wp - shift)
            )
            allowed[i, j] = same_window and same_region
            if same_window:
                dr = rows[i] % window - rows[j] % window + window - 1
                dc = cols[i] % window - cols[j] % window + window - 1
                logits[:, i, j] = table[dr * (2 * window - 1) + dc]
    out = np.zeros((n, dim))
    for h in range(heads):
        z = q[h] @ k[h].T / math.sqrt(d) + logits[h]
        z = np.where(allowed, z, -np.inf)
        out[:, h * d:(h + 1) * d] = softmax(z) @ v[h]
    out = out @ w[f"{prefix}proj/kernel"] + w[f"{prefix}proj/bias"]
    out = np.roll(out.reshape(hp, wp, dim), (shift, shift), axis=(0, 1))
    return out[:height, :width]


def swin_block(grid, w, prefix, heads, window, shift, eps=1e-5):
    """One Swin block on one (H, W, C) grid; ``window`` and ``shift`` are the ones actually used."""
    normed = layer_norm(grid, w[f"{prefix}norm1/gamma"], w[f"{prefix}norm1/beta"], eps)
    x = grid + swin_attention(normed, w, f"{prefix}attn/", heads, window, shift)
    return x + mlp(layer_norm(x, w[f"{prefix}norm2/gamma"], w[f"{prefix}norm2/beta"], eps), w, f"{prefix}mlp/")


def patch_merging(grid, w, prefix, eps=1e-5):
    """Official Swin: pad odd sides, concat x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]."""
    height, width, dim = grid.shape
    padded = np.zeros((height + height % 2, width + width % 2, dim))
    padded[:height, :width] = grid
    x = np.concatenate([padded[0::2, 0::2], padded[1::2, 0::2], padded[0::2, 1::2], padded[1::2, 1::2]], -1)
    x = layer_norm(x, w[f"{prefix}norm/gamma"], w[f"{prefix}norm/beta"], eps)
    return x @ w[f"{prefix}reduction/kernel"]


def patchify(image, kernel, bias):
    """Patch embedding as the ViT paper writes it: flatten each P x P x C patch, multiply by E."""
    ph, pw, c, dim = kernel.shape
    h, w_ = image.shape[0] // ph, image.shape[1] // pw
    out = np.zeros((h, w_, dim))
    for i in range(h):
        for j in range(w_):
            patch = image[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw, :]
            out[i, j] = patch.reshape(-1) @ kernel.reshape(-1, dim) + bias
    return out


def check_mixed_precision(make, x, policy, tolerance, prepare=None):
    """Build ``make()`` in float32 and under ``policy`` with the same weights: the mixed layer must
    compute in the policy's dtype with float32 weights, stay finite, and match float32 within
    ``tolerance`` of the output's scale. ``prepare(layer)`` may change the float32 layer's weights."""
    import keras

    reference_layer = make()
    reference_layer(x)
    if prepare is not None:
        prepare(reference_layer)
    expected = keras.ops.convert_to_numpy(reference_layer(x))
    keras.mixed_precision.set_global_policy(policy)
    layer = make()
    layer(x)
    layer.set_weights(reference_layer.get_weights())
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in layer.weights)
    out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=tolerance * max(1.0, np.abs(expected).max()))


def lowbias32(x):
    """C. Wellons' lowbias32 integer hash on uint32 numpy arrays, written from its definition."""
    x = np.asarray(x, np.uint32).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    return x


def keyed_uniform(layer_seed, update, example, row, position):
    """U(s, t, e, (w, p)) of tfvit.layers.keyed_random's docstring, one scalar at a time."""
    h = lambda v: int(lowbias32(np.uint32(v & 0xFFFFFFFF)))
    key = h(h(layer_seed) ^ update)
    example_key = h(key ^ h(example))
    row_key = h(example_key ^ h(row))
    return (h(row_key ^ position) >> 8) / 2.0 ** 24
