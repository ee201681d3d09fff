"""tfvit constructor arguments from the ``config.json`` saved beside a checkpoint.

Hugging Face ``save_pretrained`` writes a ``config.json`` (``model_type`` "vit" or "swin") next to
``model.safetensors``; timm's Hub repositories hold one naming the ``architecture`` and input size. The
weights alone do not tell ViT's number of heads, so the file is how a model is built to match a checkpoint,
and how ``load_pretrained`` checks that a hand-built model matches it. Values that differ between the
libraries are taken from the checkpoint: Hugging Face ViT's LayerNorm epsilon is 1e-12 (its default)
where timm's and tfvit's is 1e-6.
"""

import json
import os
import re

from tfvit.convert.formats import detect_format
from tfvit.convert.safetensors_file import read_safetensors_shapes
from tfvit.models.registry import list_models, model_config

CONFIG_NAME = "config.json"
# Arguments whose mismatch changes what the weights compute without changing any shape.
SHAPE_BLIND = ("num_heads", "patch_size")


def config_path(path, name=CONFIG_NAME):
    """The file ``name`` beside the checkpoint ``path`` (a file, or the folder holding it)."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return os.path.join(folder or ".", name)


def read_config_json(path, name=CONFIG_NAME):
    """The JSON file ``name`` (default ``config.json``) beside a checkpoint as a dict, or None when there is none."""
    file = config_path(path, name)
    if not os.path.isfile(file):
        return None
    with open(file) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{file!r} is not valid JSON: {error}.") from None


def pair(value):
    """(height, width) of a size given as one number or two."""
    return (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)


def _check_gelu(hf, file):
    # transformers' "gelu" is the exact erf form, which tfvit's MLP uses; the approximations are not.
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{file}: hidden_act={hf['hidden_act']!r} is not supported; tfvit's MLP uses exact GELU.")


def _from_transformers(hf, file):
    model_type = hf.get("model_type")
    _check_gelu(hf, file)
    common = {
        "image_size": pair(hf.get("image_size", 224)), "patch_size": pair(hf.get("patch_size", 16)),
        "in_channels": int(hf.get("num_channels", 3)), "qkv_bias": bool(hf.get("qkv_bias", True)),
    }
    if model_type == "vit":
        width = int(hf["hidden_size"])
        return "vit", dict(
            common, embed_dim=width, depth=int(hf["num_hidden_layers"]), num_heads=int(hf["num_attention_heads"]),
            mlp_ratio=int(hf["intermediate_size"]) / width, norm_epsilon=float(hf.get("layer_norm_eps", 1e-12)),
            class_token=True, pooling="token",
        )
    if model_type == "swin":
        if hf.get("use_absolute_embeddings"):
            raise ValueError(f"{file}: use_absolute_embeddings=True is not supported by tfvit's Swin.")
        # transformers' Swin fixes its patch-embedding LayerNorm at 1e-5; tfvit uses norm_epsilon there too,
        # so the two agree exactly at the default 1e-5 (every released Swin checkpoint).
        return "swin", dict(
            common, patch_size=pair(hf.get("patch_size", 4)), embed_dim=int(hf["embed_dim"]),
            depths=tuple(hf["depths"]), num_heads=tuple(hf["num_heads"]), window_size=int(hf["window_size"]),
            mlp_ratio=float(hf.get("mlp_ratio", 4.0)), norm_epsilon=float(hf.get("layer_norm_eps", 1e-5)),
        )
    raise ValueError(f"{file}: model_type={model_type!r} is not supported (tfvit converts 'vit' and 'swin').")


def _from_timm(hf, file):
    name = hf["architecture"]
    if name not in list_models():
        raise ValueError(
            f"{file}: timm architecture {name!r} has no tfvit registry entry; build the model by hand "
            f"(tfvit.models.VisionTransformer / SwinTransformer) and call load_pretrained."
        )
    model_class, _, kwargs = model_config(name)
    input_size = hf.get("pretrained_cfg", {}).get("input_size")
    if input_size:
        kwargs.update(image_size=tuple(input_size[1:]), in_channels=int(input_size[0]))
    kwargs.pop("drop_path_rate", None)
    return ("swin" if model_class.__name__ == "SwinTransformer" else "vit"), kwargs


def infer_config(path):
    """(family, constructor arguments) of the model a checkpoint was saved from.

    ``family`` is "vit" or "swin". ``num_classes`` is the checkpoint's classifier width, 0 when it has
    none. Raises ValueError when there is no ``config.json`` beside the checkpoint.
    """
    hf = read_config_json(path)
    file = config_path(path)
    if hf is None:
        raise ValueError(
            f"no {CONFIG_NAME} beside {os.fspath(path)!r} to infer the architecture from (ViT's number of heads is "
            f"not in the weights); build the model yourself and call tfvit.convert.load_pretrained(model, path)."
        )
    family, kwargs = _from_timm(hf, file) if "architecture" in hf else _from_transformers(hf, file)
    shapes = read_safetensors_shapes(path)
    fmt = detect_format(shapes)
    if fmt.family != family:
        raise ValueError(f"{file} describes a {family} model but the checkpoint's names are {fmt.description}'s.")
    kwargs["num_classes"] = classifier_width(shapes)
    return family, kwargs


def checkpoint_defaults(path):
    """Constructor arguments a registry model takes from a checkpoint unless the caller sets them:
    ``num_classes`` (its classifier's width; kept when it has none) and ``norm_epsilon`` (config.json)."""
    defaults = {}
    width = classifier_width(read_safetensors_shapes(path))
    if width:
        defaults["num_classes"] = width
    hf = read_config_json(path)
    if hf and "layer_norm_eps" in hf:
        defaults["norm_epsilon"] = float(hf["layer_norm_eps"])
    return defaults


def classifier_width(shapes):
    """Number of classes of the checkpoint's classifier (0 without one), from ``{name: shape}``."""
    for name in ("classifier.weight", "head.weight", "head.fc.weight"):
        if name in shapes:
            return int(shapes[name][0])
    return 0


def source_grid(path, num_positions, num_prefix_tokens):
    """Patch grid the checkpoint's position table was learned on: from config.json, else a square."""
    hf = read_config_json(path) or {}
    size, patch = None, None
    if "architecture" in hf:
        input_size, patch_side = hf.get("pretrained_cfg", {}).get("input_size"), _timm_patch(hf["architecture"])
        if input_size and patch_side:
            size, patch = tuple(input_size[1:]), (patch_side, patch_side)
    elif "image_size" in hf and "patch_size" in hf:
        size, patch = pair(hf["image_size"]), pair(hf["patch_size"])
    if size is not None and patch is not None:
        grid = (size[0] // patch[0], size[1] // patch[1])
        if grid[0] * grid[1] + num_prefix_tokens == num_positions:
            return grid
    side = round((num_positions - num_prefix_tokens) ** 0.5)
    if side * side + num_prefix_tokens != num_positions:
        raise ValueError(
            f"the checkpoint's position table has {num_positions} positions ({num_prefix_tokens} prefix), not a square "
            f"grid, and no config.json gives its image and patch size."
        )
    return side, side


def _timm_patch(architecture):
    """Patch size in a timm architecture name (``vit_base_patch16_224`` -> 16)."""
    match = re.search(r"patch(\d+)", architecture)
    return int(match.group(1)) if match else None
