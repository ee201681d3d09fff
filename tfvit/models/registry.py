"""Named model configurations, as in timm: a plain table read by ``list_models()`` and ``model_config()``;
``tfvit.create_model(name, ...)`` (tfvit/factory.py) builds one.

The ImageNet configurations reproduce the papers' architectures (ViT: Dosovitskiy et al. 2021 and
DeiT's Ti/S sizes; Swin: Liu et al. 2021 Table 1). The small configurations are made for the
studies' 32x32 RGB (CIFAR) and 28x28 grayscale (MNIST, Fashion-MNIST) images; their sizes,
parameters and MACs are printed by ``python -m tools.model_stats`` and listed in the README.
"""

import difflib
import fnmatch

from tfvit.models.pretrained import pretrained_models
from tfvit.models.resnet import ResNet
from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer

_REGISTRY = {}


def register_model(name, model_class, description, **config):
    """Add a named configuration; ``config`` holds the constructor arguments it fixes."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered.")
    _REGISTRY[name] = (model_class, description, config)


def list_models(pattern="*", pretrained=False):
    """Sorted registry names matching a shell-style ``pattern`` (e.g. ``"swin_*"``); with ``pretrained=True``
    only those with a default checkpoint (``tfvit.models.pretrained``), as timm's ``list_models`` does."""
    names = pretrained_models() if pretrained else _REGISTRY
    return sorted(name for name in names if fnmatch.fnmatch(name, pattern))


def model_config(name):
    """(model class, description, constructor arguments) of a registry name."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model name {name!r}.{hint} tfvit.list_models() lists the {len(_REGISTRY)} names.")
    model_class, description, config = _REGISTRY[name]
    return model_class, description, dict(config)


_VIT_224 = dict(image_size=224, in_channels=3, num_classes=1000)
for _name, _patch, _dim, _depth, _heads, _what in (
    ("vit_tiny_patch16_224", 16, 192, 12, 3, "ViT-Ti/16 (DeiT-Ti size)"),
    ("vit_small_patch16_224", 16, 384, 12, 6, "ViT-S/16 (DeiT-S size)"),
    ("vit_base_patch16_224", 16, 768, 12, 12, "ViT-B/16"),
    ("vit_base_patch32_224", 32, 768, 12, 12, "ViT-B/32"),
    ("vit_large_patch16_224", 16, 1024, 24, 16, "ViT-L/16"),
):
    register_model(_name, VisionTransformer, _what, patch_size=_patch, embed_dim=_dim, depth=_depth,
                   num_heads=_heads, **_VIT_224)

# Stochastic depth as the Swin paper trains on ImageNet-1K (Swin-L: its ImageNet-22K rate).
for _name, _dim, _depths, _heads, _drop_path, _what in (
    ("swin_tiny_patch4_window7_224", 96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2, "Swin-T"),
    ("swin_small_patch4_window7_224", 96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3, "Swin-S"),
    ("swin_base_patch4_window7_224", 128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5, "Swin-B"),
    ("swin_large_patch4_window7_224", 192, (2, 2, 18, 2), (6, 12, 24, 48), 0.2, "Swin-L"),
):
    register_model(_name, SwinTransformer, _what, patch_size=4, window_size=7, embed_dim=_dim, depths=_depths,
                   num_heads=_heads, drop_path_rate=_drop_path, **_VIT_224)

# Small configurations for the studies' images. Patch 4 on 32x32 gives an 8x8 grid (64 tokens), on
# 28x28 a 7x7 grid; Swin's patch 2 gives 16x16 / 14x14 grids, window 4, three stages: the last stage
# (4x4) is a single unshifted window, and at 28x28 the 14x14 and 7x7 grids are padded to the window.
register_model("vit_cifar_patch4_32", VisionTransformer, "ViT for 32x32 RGB (CIFAR): 6 blocks, width 192",
               image_size=32, in_channels=3, num_classes=10, patch_size=4, embed_dim=192, depth=6, num_heads=3,
               mlp_ratio=2.0, drop_path_rate=0.1)
register_model("vit_mnist_patch4_28", VisionTransformer, "ViT for 28x28 grayscale (MNIST): 4 blocks, width 128",
               image_size=28, in_channels=1, num_classes=10, patch_size=4, embed_dim=128, depth=4, num_heads=4,
               mlp_ratio=2.0, drop_path_rate=0.1)
register_model("swin_cifar_patch2_window4_32", SwinTransformer,
               "Swin for 32x32 RGB (CIFAR): grids 16/8/4, widths 64/128/256",
               image_size=32, in_channels=3, num_classes=10, patch_size=2, window_size=4, embed_dim=64,
               depths=(2, 2, 4), num_heads=(2, 4, 8), drop_path_rate=0.1)
register_model("swin_mnist_patch2_window4_28", SwinTransformer,
               "Swin for 28x28 grayscale (MNIST): grids 14/7/4 (padded to the window), widths 64/128/256",
               image_size=28, in_channels=1, num_classes=10, patch_size=2, window_size=4, embed_dim=64,
               depths=(2, 2, 4), num_heads=(2, 4, 8), drop_path_rate=0.1)

# ResNet-18 (He et al. 2016), seed 001's baseline: the ImageNet stem, and the usual CIFAR variant (3x3/1
# stem, no max-pool; 11.17M parameters, 0.56 GMACs at 32x32).
_RESNET18 = dict(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512))
register_model("resnet18", ResNet, "ResNet-18: 7x7/2 stem and max-pool, for 224x224 ImageNet",
               image_size=224, in_channels=3, num_classes=1000, stem="imagenet", **_RESNET18)
register_model("resnet18_cifar", ResNet, "ResNet-18 for 32x32 RGB (CIFAR): 3x3/1 stem, no max-pool",
               image_size=32, in_channels=3, num_classes=10, stem="cifar", **_RESNET18)

# Seed 001's ViTs (depth L, heads H, width D), on the CIFAR ViT's 8x8 grid of 4x4 patches, MLP ratio 4.
for _depth, _heads, _dim in ((2, 2, 128), (4, 4, 256), (6, 8, 384), (8, 8, 512)):
    register_model(f"vit_cifar_patch4_32_{_depth}l{_heads}h{_dim}", VisionTransformer,
                   f"ViT for 32x32 RGB (CIFAR): {_depth} blocks, {_heads} heads, width {_dim} (seed 001)",
                   image_size=32, in_channels=3, num_classes=10, patch_size=4, embed_dim=_dim, depth=_depth,
                   num_heads=_heads, mlp_ratio=4.0, drop_path_rate=0.1)

# The Performer study's models (../shared/seeds/003): the small ViTs above with each token mixer.
# Random features are redrawn every 1000 training steps; the local kinds see 5x5 patches (2D) or
# +/-12 positions (1D, 25 tokens: as many as the 5x5 neighbourhood).
STUDY_ATTENTION = {
    **{f"performer_{kernel}_{m}": (f"performer_{kernel}", {"num_features": m, "redraw_interval": 1000})
       for kernel in ("relu", "softmax") for m in (16, 32, 64, 128)},
    "local2d": ("local2d", {"kernel_size": 5}),
    "local1d": ("local1d", {"window": 25}),
}
for _base in ("vit_cifar_patch4_32", "vit_mnist_patch4_28"):
    _, _description, _config = model_config(_base)
    for _variant, (_kind, _kwargs) in STUDY_ATTENTION.items():
        _local = dict(class_token=False, pooling="mean") if _kind.startswith("local") else {}
        register_model(f"{_base}_{_variant}", VisionTransformer, f"{_description}, {_variant} attention",
                       **_config, attention=_kind, attention_kwargs=_kwargs, **_local)
