"""Chefer et al.'s gradient-weighted relevance against an independent reference: the models' forward
passes rewritten in JAX from their weights (float64), each attention matrix perturbed by an explicit
input delta so that jax.grad at delta = 0 gives G = dy_c/dA; Swin's windows as full attention over
the padded, rolled grid with a same-window-and-region mask (as tests/reference.py states it), mapped
back to the token grid from coordinates; patch merging averaged by loops."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tests.vis.test_saliency import bilinear_half_pixel
from tfvit.layers import SwinBlock
from tfvit.models import ResNet, SwinTransformer, VisionTransformer
from tfvit.vis.maps import normalize_maps
from tfvit.vis.relevance import (
    _relevance_grid, _window_update, attention_relevance, relevance_applies, window_matrix, window_token_index,
)

jax = pytest.importorskip("jax")
jnp = jax.numpy

VIT = {"image_size": (8, 12), "patch_size": 4, "in_channels": 2, "embed_dim": 8, "depth": 2, "num_heads": 2,
       "mlp_ratio": 2.0, "num_classes": 3}
# 14 x 20 images, patch 2: a 7 x 10 grid, windows of 4 padded to 8 x 12, shifted in the second block; the
# merging pads 7 to 8 -> a 4 x 5 grid, one 4 x 4 window padded to 4 x 8, no shift.
SWIN = {"image_size": (14, 20), "patch_size": 2, "in_channels": 2, "embed_dim": 8, "depths": (2, 2),
        "num_heads": (2, 2), "window_size": 4, "mlp_ratio": 2.0, "num_classes": 3}


def scaled(model, scale=0.5, seed=0):
    """Weights redrawn at a larger scale: attention far from uniform, gradients far from zero."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))
    return model


def images_for(config, batch=2, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, *config["image_size"], config["in_channels"])).astype(
        "float32")


# --- the JAX reference ------------------------------------------------------------------------------------

def _ln(x, w, prefix, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * w[prefix + "gamma"] + w[prefix + "beta"]


def _mlp(x, w, prefix):
    h = x @ w[prefix + "fc1/kernel"] + w[prefix + "fc1/bias"]
    h = 0.5 * h * (1.0 + jax.scipy.special.erf(h / math.sqrt(2.0)))
    return h @ w[prefix + "fc2/kernel"] + w[prefix + "fc2/bias"]


def _attention(x, w, prefix, heads, delta, bias=0.0, allowed=None):
    """Multi-head attention of tokens x (n, D) with weights A = softmax(...) + delta; returns (out, A)."""
    n, dim = x.shape
    d = dim // heads
    qkv = (x @ w[prefix + "qkv/kernel"] + w[prefix + "qkv/bias"]).reshape(n, 3, heads, d)
    q, k, v = (qkv[:, i].transpose(1, 0, 2) for i in range(3))
    logits = q @ k.transpose(0, 2, 1) / math.sqrt(d) + bias
    if allowed is not None:
        logits = jnp.where(allowed, logits, -jnp.inf)
    a = jax.nn.softmax(logits, axis=-1) + delta
    out = (a @ v).transpose(1, 0, 2).reshape(n, dim)
    return out @ w[prefix + "proj/kernel"] + w[prefix + "proj/bias"], a


def _patches(image, w):
    kernel = w["patch_embed/proj/kernel"]
    p, q, c, dim = kernel.shape
    gh, gw = image.shape[0] // p, image.shape[1] // q
    flat = image.reshape(gh, p, gw, q, c).transpose(0, 2, 1, 3, 4).reshape(gh, gw, p * q * c)
    return flat @ kernel.reshape(-1, dim) + w["patch_embed/proj/bias"]


def vit_logits(w, config, image, deltas):
    x = _patches(image, w)
    x = x.reshape(-1, x.shape[-1])
    if config.get("class_token", True):
        x = jnp.concatenate([w["cls_token/cls_token"][0], x])
    x = x + w["pos_embed/pos_embed"][0]
    attentions = []
    for i, delta in enumerate(deltas):
        p = f"blocks.{i}/"
        out, a = _attention(_ln(x, w, p + "norm1/", 1e-6), w, p + "attn/", config["num_heads"], delta)
        attentions.append(a)
        x = x + out
        x = x + _mlp(_ln(x, w, p + "norm2/", 1e-6), w, p + "mlp/")
    x = _ln(x, w, "norm/", 1e-6)
    prefix = 1 if config.get("class_token", True) else 0
    pooled = x[0] if config.get("pooling", "token") == "token" else x[prefix:].mean(0)
    return pooled @ w["head/kernel"] + w["head/bias"], attentions


def swin_geometry(grid, window, shift):
    """For the padded grid rolled by -shift: the (heads-free) bias index, the allowed pairs, and each rolled
    position's token on the original grid (-1 for padding), all from coordinates."""
    height, width = grid
    hp, wp = -(-height // window) * window, -(-width // window) * window
    rows, cols = np.divmod(np.arange(hp * wp), wp)
    same_window = (rows[:, None] // window == rows[None] // window) & (cols[:, None] // window == cols[None] // window)
    wrapped_r, wrapped_c = rows >= hp - shift, cols >= wp - shift
    same_region = (shift == 0) | ((wrapped_r[:, None] == wrapped_r[None]) & (wrapped_c[:, None] == wrapped_c[None]))
    dr = rows[:, None] % window - rows[None] % window + window - 1
    dc = cols[:, None] % window - cols[None] % window + window - 1
    r0, c0 = (rows + shift) % hp, (cols + shift) % wp  # where the roll took each position from
    token = np.where((r0 < height) & (c0 < width), r0 * width + c0, -1)
    return (hp, wp), dr * (2 * window - 1) + dc, same_window, same_window & same_region, token


def block_plan(config):
    """[(stage, block, grid, window, shift)], the official rule: one unshifted window when the grid's short side
    is at most the window, else shift window // 2 on odd blocks."""
    grid = (config["image_size"][0] // config["patch_size"], config["image_size"][1] // config["patch_size"])
    plan = []
    for s, depth in enumerate(config["depths"]):
        if s:
            grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        for b in range(depth):
            window, shift = config["window_size"], (config["window_size"] // 2) * (b % 2)
            if min(grid) <= window:
                window, shift = min(grid), 0
            plan.append((s, b, grid, window, shift))
    return plan


def swin_logits(w, config, image, deltas):
    x = _ln(_patches(image, w), w, "patch_embed/norm/", 1e-5)
    attentions = []
    for (s, b, grid, window, shift), delta in zip(block_plan(config), deltas):
        if s and not b:  # patch merging: pad odd sides, concat (0,0), (1,0), (0,1), (1,1)
            x = jnp.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2), (0, 0)))
            x = jnp.concatenate([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1)
            x = _ln(x, w, f"layers.{s}/downsample/norm/", 1e-5) @ w[f"layers.{s}/downsample/reduction/kernel"]
        p = f"layers.{s}/blocks.{b}/"
        (hp, wp), index, same_window, allowed, _ = swin_geometry(grid, window, shift)
        bias = jnp.where(same_window, w[p + "attn/relative_position_bias_table"][index].transpose(2, 0, 1), 0.0)
        height, width, dim = x.shape
        normed = jnp.pad(_ln(x, w, p + "norm1/", 1e-5), ((0, hp - height), (0, wp - width), (0, 0)))
        tokens = jnp.roll(normed, (-shift, -shift), axis=(0, 1)).reshape(hp * wp, dim)
        out, a = _attention(tokens, w, p + "attn/", config["num_heads"][s], delta, bias, allowed)
        attentions.append(a)
        out = jnp.roll(out.reshape(hp, wp, dim), (shift, shift), axis=(0, 1))[:height, :width]
        x = x + out
        x = x + _mlp(_ln(x, w, p + "norm2/", 1e-5), w, p + "mlp/")
    x = _ln(x, w, "norm/", 1e-5)
    return x.mean((0, 1)) @ w["head/kernel"] + w["head/bias"], attentions


def reference_relevance(model, config, images, classes, kind):
    """(maps on the patch grid, logits) of Chefer's rule, one image at a time."""
    forward = vit_logits if kind == "vit" else swin_logits
    with jax.enable_x64(True):
        w = {k: jnp.asarray(v) for k, v in reference.weights_of(model).items()}
        blocks = config["depth"] if kind == "vit" else sum(config["depths"])
        # A pass with scalar zeros for the deltas gives the attention shapes.
        shapes = jax.eval_shape(lambda x: forward(w, config, x, [0.0] * blocks)[1], images[0].astype(np.float64))

        def class_logit(deltas, image, c):
            logits, attentions = forward(w, config, image, deltas)
            return logits[c], (logits, attentions)

        # d logit_c / d delta at delta = 0 is G = d logit_c / dA.
        gradient = jax.jit(jax.grad(class_logit, has_aux=True))
        maps, logits = [], []
        for image, c in zip(images.astype(np.float64), classes):
            grads, (value, attentions) = gradient([jnp.zeros(a.shape) for a in shapes], image, c)
            logits.append(np.asarray(value))
            fused = [np.maximum(np.asarray(g) * np.asarray(a), 0.0).mean(0) for a, g in zip(attentions, grads)]
            maps.append(_chain_vit(fused, config) if kind == "vit" else _chain_swin(fused, config))
    return np.array(maps), np.array(logits)


def _chain_vit(fused, config):
    n = fused[0].shape[0]
    r = np.eye(n)
    for a in fused:
        r = r + a @ r
    grid = (config["image_size"][0] // config["patch_size"], config["image_size"][1] // config["patch_size"])
    if config.get("class_token", True):
        rows = r[0] if config.get("pooling", "token") == "token" else r[1:].mean(0)
        return rows[1:].reshape(grid)
    return r.mean(0).reshape(grid)


def _chain_swin(fused, config):
    plan = block_plan(config)
    first = plan[0][2]
    r = np.eye(first[0] * first[1])
    for (s, b, grid, window, shift), a in zip(plan, fused):
        if s and not b:  # merge: each new token averages its existing children
            old = plan[[p[0] for p in plan].index(s - 1)][2]
            merged = np.zeros((grid[0] * grid[1], r.shape[1]))
            for i in range(grid[0]):
                for j in range(grid[1]):
                    kids = [(2 * i + u) * old[1] + 2 * j + v for u in (0, 1) for v in (0, 1)
                            if 2 * i + u < old[0] and 2 * j + v < old[1]]
                    merged[i * grid[1] + j] = r[kids].mean(0)
            r = merged
        token = swin_geometry(grid, window, shift)[4]
        n = grid[0] * grid[1]
        on_grid = np.zeros((n, n))
        for p, tp in enumerate(token):
            for q, tq in enumerate(token):
                if tp >= 0 and tq >= 0:
                    on_grid[tp, tq] = a[p, q]
        r = r + on_grid @ r
    return r.mean(0).reshape(first)


# --- the tests ---------------------------------------------------------------------------------------------

def _assert_maps_close(got, expected):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
    # Not a uniform map: the comparison above would then test little.
    assert np.ptp(expected, axis=(1, 2)).min() > 1e-3 * scale


@pytest.mark.parametrize("variant", [{}, {"class_token": False, "pooling": "mean"},
                                     {"class_token": True, "pooling": "mean"}])
def test_vit_relevance_matches_the_reference(variant):
    config = {**VIT, **variant}
    model = scaled(VisionTransformer(**config))
    images = images_for(config)
    classes = [2, 0]
    grid, logits, used = _relevance_grid(model, images, classes)
    np.testing.assert_array_equal(used, classes)
    np.testing.assert_allclose(logits, model(images).numpy(), atol=1e-5)  # the walk is the model's forward pass
    expected, expected_logits = reference_relevance(model, config, images, classes, "vit")
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-4)
    assert grid.shape == (2, 2, 3)
    _assert_maps_close(grid, expected)
    np.testing.assert_allclose(attention_relevance(model, images, classes, upsample=False), normalize_maps(expected),
                               atol=1e-4)


def test_swin_relevance_with_shift_padding_and_merging_matches_the_reference():
    model = scaled(SwinTransformer(**SWIN), scale=0.4)
    # The geometry the reference assumes is the model's.
    assert [(b.window, b.shift) for i in range(2) for b in model.get_layer(f"layers.{i}").blocks] == \
        [(w, s) for *_, w, s in block_plan(SWIN)] == [(4, 0), (4, 2), (4, 0), (4, 0)]
    images = images_for(SWIN)
    classes = [1, 2]
    grid, logits, _ = _relevance_grid(model, images, classes)
    np.testing.assert_allclose(logits, model(images).numpy(), atol=1e-5)
    expected, expected_logits = reference_relevance(model, SWIN, images, classes, "swin")
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-4)
    assert grid.shape == (2, 7, 10)
    _assert_maps_close(grid, expected)


def brute_force_windows(grid, window, shift):
    """(nW, n) tokens of each window position, from the coordinates of window_partition's order."""
    (hp, wp), _, _, _, token = swin_geometry(grid, window, shift)
    per_row = wp // window
    out = np.zeros(((hp // window) * per_row, window * window), np.int64)
    for w_ in range(out.shape[0]):
        for p in range(window * window):
            r = (w_ // per_row) * window + p // window
            c = (w_ % per_row) * window + p % window
            out[w_, p] = token[r * wp + c]
    return out


@pytest.mark.parametrize("grid, window, shift", [((8, 8), 4, 2), ((7, 10), 4, 2), ((6, 5), 3, 0), ((5, 9), 4, 1)])
def test_window_matrix_is_the_block_diagonal_attention(grid, window, shift):
    index = window_token_index(grid, window, shift)
    np.testing.assert_array_equal(index, brute_force_windows(grid, window, shift))
    block = scaled(SwinBlock(2, window_size=window, shift_size=shift, mlp_ratio=2.0), seed=3)
    x = np.random.default_rng(2).normal(size=(2, *grid, 8)).astype("float32")
    block(x)
    assert (block.window, block.shift) == (window, shift)
    out, weights = block(x, return_attention_scores=True)
    np.testing.assert_allclose(out, block(x), atol=1e-6)  # the weights option leaves the output as it was
    weights = weights.numpy().mean(axis=1)  # (B * nW, n, n), rows summing to 1
    n = grid[0] * grid[1]
    matrix = window_matrix(weights, index, n)
    assert matrix.shape == (2, n, n)
    # Zero exactly between tokens of different windows, and between wrapped regions of a shifted window.
    _, _, _, allowed, token = swin_geometry(grid, window, shift)
    real = token >= 0
    linked = np.zeros((n, n), bool)
    linked[np.ix_(token[real], token[real])] = allowed[np.ix_(real, real)]
    assert np.all(matrix[:, ~linked] == 0) and np.all(matrix[:, linked] > 0)
    # Rows: 1 minus the weight that the padded positions of the token's window take.
    padded_share = np.where(index[None, :, None, :] < 0, weights.reshape(2, *index.shape, -1), 0).sum(-1)
    expected = np.zeros((2, n))
    expected[:, index[index >= 0]] = 1.0 - padded_share[:, index >= 0]
    np.testing.assert_allclose(matrix.sum(-1), expected, atol=1e-5)
    assert (index < 0).any() == (padded_share.max() > 1e-3)
    # The windowed update that relevance runs is R + matrix @ R.
    r = np.random.default_rng(4).normal(size=(2, n, 5))
    np.testing.assert_allclose(_window_update(r, weights, index), r + matrix @ r, atol=1e-12)


def test_depth_one_class_token_map_is_the_fused_class_row():
    # R = I + Ā for one block, so the class token's row over the patches is Ā[0, 1:] itself.
    config = {**VIT, "depth": 1}
    model = scaled(VisionTransformer(**config), seed=5)
    images = images_for(config)
    block, head = model.get_layer("blocks.0"), model.get_layer("head")
    x = model.get_layer("pos_embed")(model.get_layer("cls_token")(model.get_layer("patch_embed")(images)))
    q, k, v = block.attn.split_heads(block.norm1(x))
    attention = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / math.sqrt(q.shape[-1]))
    with tf.GradientTape() as tape:  # the attention as an input of the rest of the network
        tape.watch(attention)
        heads = tf.transpose(tf.matmul(attention, v), (0, 2, 1, 3))
        out = block.attn.proj(tf.reshape(heads, (2, 7, 8)))
        pooled = model.get_layer("norm")(block.mlp_residual(x + out))[:, 0]
        logit = tf.reduce_sum((pooled @ head.kernel + head.bias)[:, 1])
    gradient = tape.gradient(logit, attention).numpy()
    assert np.abs(gradient[:, :, 1:]).max() == 0  # only the class token's row reaches the logit
    expected = np.maximum(gradient * attention.numpy(), 0).mean(axis=1)[:, 0, 1:].reshape(2, 2, 3)
    grid, _, _ = _relevance_grid(model, images, 1)
    np.testing.assert_allclose(grid, expected, rtol=1e-5, atol=1e-7)
    assert expected.max() > 1e-3


@pytest.fixture(scope="module")
def vit_model():
    keras.utils.set_random_seed(0)
    return scaled(VisionTransformer(**VIT), seed=7)


def test_maps_are_class_specific_and_follow_class_index(vit_model):
    images = images_for(VIT)
    logits = vit_model(images).numpy()
    maps = {c: attention_relevance(vit_model, images, c, upsample=False) for c in range(3)}
    for a in range(3):
        for b in range(a):
            assert np.abs(maps[a] - maps[b]).max() > 0.05
    np.testing.assert_array_equal(attention_relevance(vit_model, images, upsample=False),
                                  np.stack([maps[c][i] for i, c in enumerate(logits.argmax(-1))]))
    np.testing.assert_array_equal(attention_relevance(vit_model, images, [2, 0], upsample=False),
                                  np.stack([maps[2][0], maps[0][1]]))
    for bad, message in [(3, r"\[0, 3\)"), ([0, 1, 2], "one class per image"), (True, "None, an int")]:
        with pytest.raises(ValueError, match=message):
            attention_relevance(vit_model, images, bad)


def test_upsampled_maps_are_the_bilinear_grid(vit_model):
    images = images_for(VIT)
    grid, _, _ = _relevance_grid(vit_model, images, None)
    full = attention_relevance(vit_model, images)
    assert full.shape == (2, 8, 12) and full.dtype == np.float32
    expected = bilinear_half_pixel(grid, (8, 12))
    low, high = expected.min(axis=(1, 2), keepdims=True), expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(full, (expected - low) / (high - low), atol=1e-5)


def test_an_output_activation_is_skipped_for_the_logit():
    plain = scaled(VisionTransformer(**VIT), seed=8)
    soft = VisionTransformer(**VIT, classifier_activation="softmax")
    soft.set_weights(plain.get_weights())
    images = images_for(VIT)
    _, logits, _ = _relevance_grid(soft, images, 0)
    np.testing.assert_allclose(tf.nn.softmax(logits), soft(images), atol=1e-6)
    np.testing.assert_allclose(attention_relevance(soft, images, 0), attention_relevance(plain, images, 0), atol=1e-6)


NO_MATRIX = {**VIT, "class_token": False, "pooling": "mean"}


@pytest.mark.parametrize("make, message", [
    (lambda: VisionTransformer(**NO_MATRIX, attention="performer_softmax"),
     r"PerformerAttention.*explain\(model, images\)"),
    (lambda: VisionTransformer(**NO_MATRIX, attention="local2d", attention_kwargs={"kernel_size": 1}),
     r"NeighborhoodAttention2D.*explain\(model, images\)"),
    (lambda: ResNet(image_size=8, in_channels=2, num_classes=3, depths=(1, 1), widths=(4, 4), stem="cifar"),
     r"ResNet.*gradcam.*explain\(model, images\)"),
    (lambda: VisionTransformer(**{**VIT, "num_classes": 0}), "no classification head"),
])
def test_models_it_cannot_explain_are_refused(make, message):
    model = make()
    assert not relevance_applies(model)
    with pytest.raises(ValueError, match=message) as error:
        attention_relevance(model, np.zeros((1, *model.input_shape[1:]), "float32"))
    assert f"'{model.name}'" in str(error.value)


def test_relevance_applies_to_vit_and_swin(vit_model):
    assert relevance_applies(vit_model)
    assert relevance_applies(SwinTransformer(**SWIN))


@pytest.mark.parametrize("make, config", [(VisionTransformer, VIT), (SwinTransformer, SWIN)])
def test_mixed_precision_gives_finite_maps(make, config):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = scaled(make(**config), scale=0.3)
    maps = attention_relevance(model, images_for(config))
    assert maps.shape == (2, *config["image_size"]) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() == 0 and maps.max() == 1
