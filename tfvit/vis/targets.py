"""Which layer's output Grad-CAM explains: the default target of a model, and resolving a target name.

Grad-CAM weighs the feature maps A^k of one layer by the gradient of the class logit (Selvaraju et
al. 2017, eq. 1), so the target must be a layer whose output still has a spatial layout and lies on
the path to the logits. A CNN's last 4D output is the usual choice. A vision transformer's tokens
(class token, if any, dropped) are its feature map once reshaped to the patch grid, but which tokens
receive a gradient depends on the head:
- a ViT whose head reads the class token: the last block's output reaches the logits only through
  the class token, so its patch tokens get no gradient; the target is the last block's ``norm1``
  (as pytorch-grad-cam), whose output feeds the attention that mixes the patches into the class
  token. That output is no node of the model's graph, so it is named ``"blocks.i/norm1"`` and the
  block is run in two parts around it (``tfvit.vis.grid_model``).
- a ViT that pools the patch tokens, and a Swin: the final ``norm``. The logit is then a linear
  function of the mean of that grid, so the gradient is the same at every position and Grad-CAM is
  exactly CAM (Zhou et al. 2016).
A wrong name raises a ValueError that lists the candidates: layers with a token (3D) or feature-map
(4D) output, and the ``norm1`` of every TransformerBlock.
"""

import math

import keras


def default_target_layer(model):
    """Name of the target ``gradcam`` uses by default (see ``gradcam``)."""
    from tfvit.models import SwinTransformer, VisionTransformer

    if isinstance(model, VisionTransformer):
        config = model.get_config()
        if config["class_token"] and config["pooling"] == "token":
            return f"blocks.{config['depth'] - 1}/norm1"
        return "norm"
    if isinstance(model, SwinTransformer):
        return "norm"
    for candidate in reversed(model.layers):
        if not isinstance(candidate, keras.layers.InputLayer) and len(_output_shape(candidate)) == 4:
            return candidate.name
    raise ValueError(
        f"gradcam found no layer with a 4D (batch, height, width, channels) output in model "
        f"'{model.name}'; name the feature layer with layer=..."
    )


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer never called in this graph, or with several outputs
        return ()


def candidates(model):
    """The target names ``gradcam`` accepts for ``model``, listed in its error messages."""
    from tfvit.layers import TransformerBlock

    names = []
    for lay in model.layers:
        if not isinstance(lay, keras.layers.InputLayer) and len(_output_shape(lay)) in (3, 4):
            names.append(lay.name)
            if isinstance(lay, TransformerBlock):
                names.append(f"{lay.name}/norm1")
    return names


def transformer_block(model, block_name, sublayer):
    """The TransformerBlock ``block_name`` of ``model``, for the target ``"block_name/norm1"``."""
    from tfvit.layers import TransformerBlock

    names = [lay.name for lay in model.layers]
    block = model.get_layer(block_name) if block_name in names else None
    if not isinstance(block, TransformerBlock) or sublayer != "norm1":
        raise ValueError(
            f"layer {block_name + '/' + sublayer!r}: the only sub-layer target is 'norm1' of a TransformerBlock "
            f"('blocks.i/norm1'). Candidates of model '{model.name}': {', '.join(candidates(model))}."
        )
    return block


def layer_output(model, name):
    """The symbolic output of layer ``name``: tokens (B, N, D) or a feature map (B, h, w, C)."""
    names = [lay.name for lay in model.layers]
    if name not in names:
        raise ValueError(
            f"layer {name!r} is not a layer of model '{model.name}'. Layers with a token (3D) or "
            f"feature-map (4D) output: {', '.join(candidates(model)) or 'none'}."
        )
    try:
        output = model.get_layer(name).output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"layer {name!r} of model '{model.name}' has no single symbolic output ({error}); gradcam needs "
            f"a functional model."
        ) from None
    if not hasattr(output, "shape") or len(output.shape) not in (3, 4):
        raise ValueError(
            f"layer {name!r} outputs shape {getattr(output, 'shape', None)}; gradcam needs tokens (batch, "
            f"tokens, dim) or a feature map (batch, height, width, channels). Candidates: "
            f"{', '.join(candidates(model))}."
        )
    return output


def token_layout(model, name, shape):
    """(number of prefix tokens, (h, w)) of a target output: (0, (h, w)) for a 4D map."""
    if len(shape) == 4:
        return 0, (shape[1], shape[2])
    tokens = shape[1]
    grid = getattr(model, "grid_size", None)
    if grid is not None and tokens is not None and tokens >= grid[0] * grid[1]:
        return tokens - grid[0] * grid[1], tuple(grid)
    # A token model that is not tfvit's: a square grid after at most one class token.
    for prefix in (0, 1):
        side = math.isqrt(max(tokens - prefix, 0)) if tokens is not None else 0
        if side and side * side == tokens - prefix:
            return prefix, (side, side)
    raise ValueError(
        f"layer {name!r} outputs {tokens} tokens, which do not form a patch grid (with at most one class "
        f"token); choose a layer with a 4D feature map or a token grid: {', '.join(candidates(model))}."
    )
