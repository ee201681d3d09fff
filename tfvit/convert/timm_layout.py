"""timm's tensor names and torch layouts -> tfvit's variable paths and Keras layouts.

tfvit names its layers as timm names its modules (``blocks.3.attn.qkv`` -> ``blocks.3/attn/qkv``), so the
path follows from the name: dots become slashes except before a block or stage index. The layouts differ:
    torch Linear weight (out, in)          -> Dense kernel (in, out)            (transpose)
    torch Conv2d weight (out, in, kh, kw)  -> Conv2D kernel (kh, kw, in, out)
    LayerNorm weight / bias                -> gamma / beta
Class token, position table and relative-position bias table have the same layout in both.
"""

import re

import numpy as np

_SAME_LAYOUT = {"cls_token": "cls_token/cls_token", "pos_embed": "pos_embed/pos_embed"}


def tfvit_path(timm_name):
    """tfvit variable path of a timm parameter name, e.g. ``layers.1.downsample.norm.weight`` ->
    ``layers.1/downsample/norm/gamma``."""
    if timm_name in _SAME_LAYOUT:
        return _SAME_LAYOUT[timm_name]
    module, leaf = timm_name.rsplit(".", 1)
    if module in ("head", "head.fc"):  # timm >= 0.9 wraps the Swin classifier in a ClassifierHead
        module = "head"
    path = re.sub(r"\.(?!\d)", "/", module)
    if leaf == "relative_position_bias_table":
        return f"{path}/{leaf}"
    is_norm = module.rsplit(".", 1)[-1].startswith("norm")
    names = {"weight": "gamma", "bias": "beta"} if is_norm else {"weight": "kernel", "bias": "bias"}
    if leaf not in names:
        raise ValueError(f"no tfvit counterpart for the timm parameter {timm_name!r}.")
    return f"{path}/{names[leaf]}"


def to_keras_layout(path, array):
    """A torch-layout tensor in the layout of the tfvit variable at ``path``."""
    array = np.asarray(array)
    if path.endswith("/kernel"):
        if array.ndim == 2:
            return array.T
        if array.ndim == 4:
            return array.transpose(2, 3, 1, 0)
        raise ValueError(f"{path}: expected a 2-D (linear) or 4-D (convolution) weight, got shape {array.shape}.")
    return array
