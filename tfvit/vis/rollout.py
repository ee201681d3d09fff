"""Attention rollout for vision transformers with a class token.

Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", section 3: the residual
connection is accounted for by mixing each layer's attention with the identity, and the layers are
chained by matrix products:
    A_l = fuse_heads(attention weights of block l),   Â_l = rownorm(0.5 A_l + 0.5 I),
    rollout = Â_L ... Â_2 Â_1.
Row 0 (the class token) over the patch columns, reshaped to the patch grid, is the saliency map.
``head_fusion`` ("mean", "max", "min") and ``discard_ratio`` (drop each row's weakest attention
weights before mixing, never the class token's) are the options of Jacob Gildenblat's vit-explain,
the usual reference implementation. Two differences from its code: it drops the smallest weights of
the whole flattened matrix (of the first image only), sparing just the (0, 0) entry, where here each
row drops its own smallest patch weights; and it divides by the row sums without keeping the axis
(so column j by row j's sum), where here the rows are renormalised as the paper states.
"""

import numpy as np

from tfvit.vis.inputs import check_images
from tfvit.vis.maps import normalize_maps, resize_maps

HEAD_FUSIONS = ("mean", "max", "min")


def attention_weights(model, images):
    """The attention weights of every block of a tfvit ViT: a list of float32 (B, heads, N, N) arrays.

    The blocks are run one by one in inference mode, without changing or re-wiring the model's layers:
    block i's weights are ``attn(norm1(x), return_attention_scores=True)``, and its output, the next
    block's x, is ``block.call_from_norm1(x, norm1(x))``, the model's own forward pass.
    """
    blocks = _check_rollout_model(model)
    images = check_images(model, images, where="attention_rollout")
    x = model.get_layer("patch_embed")(images)
    x = model.get_layer("cls_token")(x)
    x = model.get_layer("pos_embed")(x)
    weights = []
    for i, block in enumerate(blocks):
        normed = block.norm1(x)
        _, attention = block.attn(normed, return_attention_scores=True, training=False)
        weights.append(np.asarray(attention, dtype=np.float32))
        if i + 1 < len(blocks):  # the last block's output is not needed
            x = block.call_from_norm1(x, normed, training=False)
    return weights


def rollout(attentions, discard_ratio=0.0, head_fusion="mean"):
    """Chain per-block attention weights (each (B, heads, N, N)) into the (B, N, N) rollout matrix.

    ``discard_ratio`` in [0, 1): in each row of the fused attention, the floor(ratio * (N - 1)) smallest
    weights among the columns 1..N-1 are set to zero (column 0, the class token, is always kept),
    before the identity is mixed in and the rows renormalised.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(map(repr, HEAD_FUSIONS))}, got {head_fusion!r}.")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}.")
    if not attentions:
        raise ValueError("rollout needs the attention weights of at least one block, got none.")
    result = None
    for attention in attentions:
        attention = np.asarray(attention, dtype=np.float64)
        if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
            raise ValueError(
                f"attention weights must have shape (batch, heads, tokens, tokens), got {attention.shape}."
            )
        fused = getattr(np, head_fusion)(attention, axis=1)
        tokens = fused.shape[-1]
        drop = int(float(discard_ratio) * (tokens - 1))
        if drop:
            # Indices of the `drop` smallest patch-column weights of every row (column 0 excluded).
            weakest = np.argsort(fused[..., 1:], axis=-1, kind="stable")[..., :drop] + 1
            np.put_along_axis(fused, weakest, 0.0, axis=-1)
        mixed = 0.5 * fused + 0.5 * np.eye(tokens)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        result = mixed if result is None else mixed @ result
    return result


def attention_rollout(model, images, discard_ratio=0.0, head_fusion="mean", upsample=True):
    """Attention-rollout saliency of ``images`` (B, H, W, C): float32 (B, H, W) maps, each in [0, 1].

    ``model`` must be a tfvit VisionTransformer with global attention and a class token. The class
    token's rollout row over the patches is reshaped to the patch grid, resized bilinearly (half-pixel
    centres) to H x W unless ``upsample=False`` (then (B, grid_h, grid_w)), and min-max scaled.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(map(repr, HEAD_FUSIONS))}, got {head_fusion!r}.")
    joint = rollout(attention_weights(model, images), discard_ratio, head_fusion)
    grid = joint[:, 0, 1:].reshape(-1, *model.grid_size)
    if upsample:
        grid = resize_maps(grid, model.image_size)
    return normalize_maps(grid)


def rollout_applies(model):
    """Whether ``attention_rollout`` can explain ``model`` (a tfvit ViT with global attention and a class token)."""
    try:
        _check_rollout_model(model)
    except ValueError:
        return False
    return True


def _check_rollout_model(model):
    """The blocks of a ViT that rollout can read, or a ValueError saying what to use instead."""
    from tfvit.layers import MultiHeadSelfAttention, TransformerBlock
    from tfvit.models import VisionTransformer

    if not isinstance(model, VisionTransformer):
        # ValueError, the error tfvit raises for every bad argument, rather than ruff's TypeError.
        raise ValueError(  # noqa: TRY004
            f"attention_rollout needs a tfvit VisionTransformer with global attention and a class token, "
            f"got {type(model).__name__} '{getattr(model, 'name', '?')}'. For Swin, CNNs and other models use "
            f"tfvit.vis.gradcam."
        )
    config = model.get_config()
    if not config["class_token"]:
        raise ValueError(
            f"attention_rollout reads the class token's attention, but ViT '{model.name}' has no class token "
            f"(class_token=False); use tfvit.vis.gradcam."
        )
    blocks = [model.get_layer(f"blocks.{i}") for i in range(config["depth"])]
    for block in blocks:
        if not isinstance(block, TransformerBlock) or not isinstance(block.attn, MultiHeadSelfAttention):
            kind = type(getattr(block, "attn", block)).__name__
            raise ValueError(  # noqa: TRY004
                f"attention_rollout needs global attention weights, but block '{block.name}' of ViT "
                f"'{model.name}' uses {kind} (attention={config['attention']!r}); use tfvit.vis.gradcam."
            )
    return blocks
