"""Gradient-weighted attention relevance for ViT and Swin.

Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers" (ICCV), the rule for self-attention encoders (eqs. 5-6): with A_l the
(heads, N, N) attention weights of block l and G_l = dy_c / dA_l the gradient of the class logit y_c,
    R = I,   then for l = 1..L:   Ā_l = mean_heads(max(G_l ⊙ A_l, 0)),   R = R + Ā_l R.
Row i of R is how much each input token is relevant to token i's final state; the map is the row of
what the head reads: the class token's row over the patch columns (ViT, pooling="token"), or the mean
of the rows of the pooled tokens (ViT with pooling="mean", Swin). Unlike attention rollout it is
class-specific, through G.
Swin: a block's window weights, scattered to the stage's token grid, form a block-diagonal N_s x N_s
Ā (zero between tokens of different windows; padded tokens dropped). R_s is (N_s, N_1): stage-s tokens
over the first stage's patches, R_1 = I; a patch merging averages the rows of each token's 2 x 2
(existing) children. The map is the mean of the last stage's rows, on the patch_embed grid.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.maps import normalize_maps, resize_maps

WHERE = "attention_relevance"


def attention_relevance(model, images, class_index=None, upsample=True):
    """Relevance maps of ``images`` (B, H, W, C) for class ``class_index``: float32 (B, H, W) in [0, 1].

    ``model``: a tfvit VisionTransformer with global attention (class token or mean pooling) or a
    SwinTransformer. ``class_index``: None (each image's predicted class), an int, or one per image.
    The map on the patch grid is resized bilinearly (half-pixel centres) to H x W unless
    ``upsample=False`` (then (B, grid_h, grid_w)), and min-max scaled.
    """
    grid, _, _ = _relevance_grid(model, images, class_index)
    if upsample:
        grid = resize_maps(grid, model.image_size)
    return normalize_maps(grid)


def relevance(attentions, gradients):
    """Chain per-block attention weights and their gradients (each (B, heads, N, N)) into the (B, N, N) R."""
    result = None
    for attention, gradient in zip(attentions, gradients, strict=True):
        fused = _fused(attention, gradient)
        result = np.broadcast_to(np.eye(fused.shape[-1]), fused.shape).copy() if result is None else result
        result = result + fused @ result
    if result is None:
        raise ValueError("relevance needs the attention weights of at least one block, got none.")
    return result


def relevance_applies(model):
    """Whether ``attention_relevance`` can explain ``model`` (a tfvit ViT with global attention, or a Swin)."""
    try:
        _check_model(model)
    except ValueError:
        return False
    return True


def window_token_index(grid_size, window, shift):
    """(nW, window^2) ints: the token (row-major on the un-shifted, un-padded grid) at each position of
    each window of a Swin block, -1 for padding; windows and positions in ``window_partition``'s order."""
    height, width = grid_size
    hp, wp = -(-height // window) * window, -(-width // window) * window
    index = np.full((hp, wp), -1, np.int64)
    index[:height, :width] = np.arange(height * width).reshape(height, width)
    # SwinBlock pads (bottom, right), then rolls by -shift, then cuts the windows.
    index = np.roll(index, (-shift, -shift), axis=(0, 1))
    return index.reshape(hp // window, window, wp // window, window).transpose(0, 2, 1, 3).reshape(-1, window ** 2)


def window_matrix(values, index, num_tokens):
    """Per-window (B * nW, n, n) (or (B, nW, n, n)) values as the block-diagonal (B, N, N) matrix over the
    token grid, ``index`` from ``window_token_index``; rows and columns of padded positions are dropped."""
    values = np.asarray(values).reshape(-1, *index.shape, index.shape[1])
    safe = np.where(index >= 0, index, num_tokens)  # padding -> one extra row and column, cut below
    full = np.zeros((values.shape[0], num_tokens + 1, num_tokens + 1), values.dtype)
    full[:, safe[:, :, None], safe[:, None, :]] = values
    return full[:, :num_tokens, :num_tokens]


def _fused(attention, gradient):
    """Ā = mean over heads of the positive part of G ⊙ A, in float64."""
    attention, gradient = np.asarray(attention, np.float64), np.asarray(gradient, np.float64)
    return np.maximum(gradient * attention, 0.0).mean(axis=-3)


def _window_update(result, fused, index):
    """R + Ā R for the block-diagonal Ā of ``window_matrix(fused, index, N)``, one window at a time:
    O(N n N_1) instead of the dense product's O(N^2 N_1)."""
    batch, tokens, columns = result.shape
    fused = fused.reshape(batch, *index.shape, index.shape[1])
    # Padding carries no relevance: zero its columns of Ā, so any row (token 0's) can stand in for it.
    fused = np.where(index[None, :, None, :] >= 0, fused, 0.0)
    rows = result[:, np.maximum(index, 0)]  # (B, nW, n, N_1): each window's rows of R
    update = fused @ rows
    update += rows
    # Back to token order: each real token sits at exactly one window position.
    where = np.empty(tokens, np.int64)
    where[index[index >= 0]] = np.flatnonzero(index >= 0)
    return update.reshape(batch, -1, columns)[:, where]


def _merge_rows(result, grid):
    """Patch merging: each token of the halved grid gets the mean of its existing 2 x 2 children's rows
    (PatchMerging zero-pads an odd side; the padding carries no relevance and is not counted)."""
    batch, _, columns = result.shape
    height, width = grid
    pad = ((0, height % 2), (0, width % 2))
    rows = np.pad(result.reshape(batch, height, width, columns), ((0, 0), *pad, (0, 0)))
    counts = np.pad(np.ones(grid), pad)
    half = ((height + 1) // 2, (width + 1) // 2)
    sums = rows.reshape(batch, half[0], 2, half[1], 2, columns).sum(axis=(2, 4))
    counts = counts.reshape(half[0], 2, half[1], 2).sum(axis=(1, 3))
    return (sums / counts[None, :, :, None]).reshape(batch, -1, columns)


def _relevance_grid(model, images, class_index):
    """The unnormalised float64 (B, grid_h, grid_w) maps, the walk's float32 logits and the classes explained."""
    kind, parts = _check_model(model)
    images = check_images(model, images, where=WHERE)
    with tf.GradientTape() as tape:
        walk = _walk_vit if kind == "vit" else _walk_swin
        logits, weights, steps = walk(model, parts, tf.convert_to_tensor(images))
        classes = check_class_index(class_index, logits.numpy())
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    gradients = tape.gradient(score, weights)
    if any(g is None for g in gradients):  # an attention layer whose output does not use its weights
        raise ValueError(f"{WHERE}: the logits of '{model.name}' do not depend on its attention weights.")
    batch = images.shape[0]
    if kind == "vit":
        result = relevance([w.numpy() for w in weights], [g.numpy() for g in gradients])
        prefix = 1 if model.get_config()["class_token"] else 0
        # The head reads the class token, or the mean of the patch tokens.
        rows = result[:, 0] if model.get_config()["pooling"] == "token" else result[:, prefix:].mean(axis=1)
        grid = rows[:, prefix:].reshape(batch, *model.grid_size)
    else:
        fused = [_fused(w.numpy(), g.numpy()).reshape(batch, -1, *w.shape[-2:]) for w, g in zip(weights, gradients)]
        # One image at a time: R_1 is N_1 x N_1 (3136^2 for a 224-pixel Swin-T), and its windowed products too.
        grid = np.stack([_swin_relevance([f[b:b + 1] for f in fused], steps) for b in range(batch)])
        grid = grid.reshape(batch, *model.stage_resolutions[0])
    return grid, logits.numpy(), classes


def _swin_relevance(fused, steps):
    """The (1, N_1) map of one image from its blocks' Ā (1, nW, n, n), in the order of ``steps``."""
    tokens = steps[0][1][0][0] * steps[0][1][0][1]  # the first block's grid is patch_embed's
    result = np.eye(tokens)[None]
    fused = iter(fused)
    for step, geometry in steps:
        if step == "merge":
            result = _merge_rows(result, geometry)
        else:
            grid_size, window, shift = geometry
            result = _window_update(result, next(fused), window_token_index(grid_size, window, shift))
    return result.mean(axis=1)  # the pool averages the last stage's tokens


def _walk_vit(model, blocks, images):
    """The ViT's forward pass in inference mode (dropout and drop path are identities), keeping every
    block's attention weights: the tensors its output is computed from, for the tape's gradient."""
    x = model.get_layer("patch_embed")(images)
    if model.get_config()["class_token"]:
        x = model.get_layer("cls_token")(x)
    x = model.get_layer("pos_embed")(x)
    weights = []
    for block in blocks:
        out, attention = block.attn(block.norm1(x), return_attention_scores=True, training=False)
        weights.append(attention)
        x = block.mlp_residual(x + out, training=False)
    return _logits(model, x), weights, None


def _walk_swin(model, stages, images):
    """The Swin's forward pass in inference mode, keeping every block's window weights; ``steps`` lists
    ("merge", grid before it) and ("block", (grid, window, shift)) in order."""
    x = model.get_layer("patch_embed")(images)
    weights, steps = [], []
    for stage in stages:
        if stage.downsample is not None:
            steps.append(("merge", tuple(x.shape[1:3])))
            x = stage.downsample(x)
        for block in stage.blocks:
            steps.append(("block", (tuple(x.shape[1:3]), block.window, block.shift)))
            x, attention = block(x, return_attention_scores=True, training=False)
            weights.append(attention)
    return _logits(model, x), weights, steps


def _logits(model, tokens):
    """The class logits before any output activation: ``head``'s x @ kernel + bias, in float32."""
    features = model.get_layer("pool")(model.get_layer("norm")(tokens))
    head = model.get_layer("head")
    logits = tf.matmul(tf.cast(features, "float32"), tf.cast(head.kernel, "float32"))
    return logits + tf.cast(head.bias, "float32") if head.use_bias else logits


def _check_model(model):
    """("vit", blocks) or ("swin", stages) for a model relevance can explain, else a ValueError."""
    from tfvit.layers import MultiHeadSelfAttention, TransformerBlock
    from tfvit.models import SwinTransformer, VisionTransformer

    instead = "tfvit.vis.explain(model, images) (RISE for transformers)"
    if not isinstance(model, (VisionTransformer, SwinTransformer)):
        # ValueError, the error tfvit raises for every bad argument, rather than ruff's TypeError.
        raise ValueError(  # noqa: TRY004
            f"{WHERE} needs a tfvit VisionTransformer with global attention or a SwinTransformer, got "
            f"{type(model).__name__} '{getattr(model, 'name', '?')}'; for CNNs and other models use "
            f"tfvit.vis.gradcam or {instead}."
        )
    config = model.get_config()
    if not config["num_classes"] or not isinstance(_layer(model, "head"), keras.layers.Dense):
        raise ValueError(
            f"{WHERE} explains a class logit, but '{model.name}' has no classification head (num_classes=0)."
        )
    if isinstance(model, SwinTransformer):
        return "swin", [model.get_layer(f"layers.{i}") for i in range(len(config["depths"]))]
    blocks = [model.get_layer(f"blocks.{i}") for i in range(config["depth"])]
    for block in blocks:
        if not isinstance(block, TransformerBlock) or not isinstance(block.attn, MultiHeadSelfAttention):
            kind = type(getattr(block, "attn", block)).__name__
            raise ValueError(  # noqa: TRY004
                f"{WHERE} needs explicit N x N attention weights, but block '{block.name}' of ViT '{model.name}' "
                f"uses {kind} (attention={config['attention']!r}), which never forms them; use {instead} "
                f"or tfvit.vis.gradcam."
            )
    return "vit", blocks


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None
