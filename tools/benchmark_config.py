"""What tools/benchmark.py measures: its configurations, precisions and XLA modes, and one model
built the same way by tfvit, by keras-hub and by timm.

Configurations are tfvit registry models; keras-hub's model is built from the same numbers
(``keras_hub_arguments``), and so is timm's PyTorch model (``timm_arguments``).

ViT: patch size, width (hidden_dim), depth (num_layers), heads, MLP width (int(width * mlp_ratio)),
class token, qkv bias and LayerNorm epsilon map one to one; keras-hub's backbone ends in the final
LayerNorm, and ``keras_hub.models.ViTImageClassifier`` adds the same head as tfvit's (class token,
or "gap" mean pooling, then Dense(num_classes)). Swin: patch size, embed_dim, depths, heads, window,
MLP ratio, qkv bias (LayerNorm epsilon 1e-5, fixed in keras-hub) and
``SwinTransformerImageClassifier`` (mean pooling, Dense). Both heads are float32 logits, as tfvit's.
Dropout, attention dropout and stochastic depth are 0 in both: tfvit's CIFAR and Swin registry
configurations train with drop_path_rate 0.1-0.2 and keras-hub's Swin defaults to 0.1, but
keras-hub's ViT has no stochastic depth at all, so for the same work neither model gets any.

timm (``timm.models.vision_transformer.VisionTransformer`` / ``timm.models.swin_transformer.SwinTransformer``,
constructed directly, not from timm's registry): image size, patch size, embed_dim, depth(s), heads,
mlp_ratio, qkv_bias, class token, LayerNorm epsilon, window size and num_classes are the constructor's
own arguments. tfvit's "token" pooling is timm's global_pool="token"; tfvit's "mean" pooling
(final LayerNorm, then the mean of the patch tokens) is global_pool="avg" with fc_norm=False (timm
would otherwise move the final norm after the pooling). Swin's LayerNorm epsilon is nn.LayerNorm's
1e-5, as tfvit's default. A Swin stage no larger than the window (CIFAR Swin's last stage: 4x4 tokens,
window 4) is one unshifted window in timm (always_partition=False, its default) as in tfvit, so the
relative-position tables keep (2 x window - 1)^2 rows. Drop rates are 0, as above. The parameter
counts equal tfvit's for every configuration (tests/tools/test_benchmark.py).
"""

import importlib.util

# CLI name -> (tfvit registry name, default batch size)
CONFIGS = {
    "cifar_vit": ("vit_cifar_patch4_32", 128),
    "cifar_swin": ("swin_cifar_patch2_window4_32", 128),
    "vit_tiny": ("vit_tiny_patch16_224", 32),
    "swin_tiny": ("swin_tiny_patch4_window7_224", 32),
}
IMPLS = ("tfvit", "keras_hub", "timm")
PRECISIONS = ("float32", "mixed_bfloat16")
JIT_MODES = ("xla", "no-xla")
MATMUL_DTYPES = ("float32", "bfloat16")
KERAS_HUB_VERSION = "0.32.0"
# What both implementations train without: see the module docstring.
TFVIT_OVERRIDES = dict(drop_path_rate=0.0, dropout=0.0, attention_dropout=0.0)


def keras_hub_available():
    return importlib.util.find_spec("keras_hub") is not None


def timm_available():
    """PyTorch and timm installed (found, not imported: the parent stays light; a child that cannot
    import them reports the error and the benchmark skips timm for that configuration)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "timm"))


def tfvit_config(registry_name):
    """(family, constructor arguments) of a tfvit registry model, with the benchmark's overrides."""
    from tfvit.models import SwinTransformer, VisionTransformer, model_config

    model_class, _, config = model_config(registry_name)
    config.update(TFVIT_OVERRIDES)
    family = {VisionTransformer: "vit", SwinTransformer: "swin"}.get(model_class)
    if family is None:
        raise ValueError(f"{registry_name}: only ViT and Swin configurations have a keras-hub counterpart.")
    return family, config


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def from_logits(config):
    """The loss's ``from_logits`` for a tfvit configuration's ``classifier_activation``."""
    activation = config.get("classifier_activation")
    if activation in (None, "linear"):
        return True
    if activation == "softmax":
        return False
    raise ValueError(f"classifier_activation={activation!r}: the benchmark's loss takes logits or softmax.")


def keras_hub_arguments(registry_name):
    """The keras-hub model equal to a tfvit configuration.

    Returns (family, backbone keyword arguments, classifier keyword arguments) for
    ``keras_hub.models.ViTBackbone`` + ``ViTImageClassifier`` (family "vit") or
    ``SwinTransformerBackbone`` + ``SwinTransformerImageClassifier`` ("swin"). Raises ValueError for
    what keras-hub cannot express the same way.
    """
    family, c = tfvit_config(registry_name)
    image = _pair(c.get("image_size", 224))
    patch = _pair(c.get("patch_size", 16 if family == "vit" else 4))
    channels = c.get("in_channels", 3)
    num_classes = c.get("num_classes", 1000)
    if not num_classes:
        raise ValueError(f"{registry_name}: num_classes=0 (no head) is not benchmarked.")
    classifier = dict(num_classes=num_classes, activation=c.get("classifier_activation"), head_dtype="float32")
    if family == "vit":
        if c.get("attention", "global") != "global":
            raise ValueError(f"{registry_name}: attention={c['attention']!r} has no keras-hub counterpart.")
        if not c.get("qkv_bias", True):
            # keras-hub's use_mha_bias drops the output projection's bias too; tfvit keeps it.
            raise ValueError(f"{registry_name}: qkv_bias=False has no exact keras-hub counterpart.")
        class_token, pooling = c.get("class_token", True), c.get("pooling", "token")
        if pooling == "token" and class_token:
            hub_pooling = "token"
        elif pooling == "mean" and not class_token:
            hub_pooling = "gap"
        else:
            # keras-hub's "gap" would average the class token with the patch tokens.
            raise ValueError(f"{registry_name}: class_token={class_token}, pooling={pooling!r} has no keras-hub "
                             f"counterpart.")
        embed_dim = c.get("embed_dim", 768)
        backbone = dict(
            image_shape=(*image, channels), patch_size=patch, num_layers=c.get("depth", 12),
            num_heads=c.get("num_heads", 12), hidden_dim=embed_dim, mlp_dim=int(embed_dim * c.get("mlp_ratio", 4.0)),
            dropout_rate=0.0, attention_dropout=0.0, layer_norm_epsilon=c.get("norm_epsilon", 1e-6),
            use_mha_bias=True, use_mlp_bias=True, use_class_token=class_token, use_patch_bias=True,
        )
        classifier.update(pooling=hub_pooling, dropout=0.0)
        return family, backbone, classifier
    if patch[0] != patch[1]:
        raise ValueError(f"{registry_name}: keras-hub's Swin takes a square patch, not {patch}.")
    if c.get("norm_epsilon", 1e-5) != 1e-5:
        raise ValueError(f"{registry_name}: keras-hub's Swin fixes the LayerNorm epsilon at 1e-5.")
    backbone = dict(
        image_shape=(*image, channels), embed_dim=c.get("embed_dim", 96), depths=tuple(c.get("depths", (2, 2, 6, 2))),
        num_heads=tuple(c.get("num_heads", (3, 6, 12, 24))), window_size=c.get("window_size", 7), patch_size=patch[0],
        mlp_ratio=c.get("mlp_ratio", 4.0), qkv_bias=c.get("qkv_bias", True), dropout_rate=0.0,
        attention_dropout=0.0, drop_path=0.0, patch_norm=True,
    )
    classifier.update(dropout=0.0)
    return family, backbone, classifier


def timm_arguments(registry_name):
    """The timm model equal to a tfvit configuration: (family, keyword arguments) for
    ``timm.models.vision_transformer.VisionTransformer`` (family "vit") or
    ``timm.models.swin_transformer.SwinTransformer`` ("swin"). The ViT's ``norm_epsilon`` becomes its
    ``norm_layer`` in ``tools.benchmark_torch.build_timm``, so these arguments stay plain numbers.
    Raises ValueError for what timm cannot express the same way."""
    family, c = tfvit_config(registry_name)
    image = _pair(c.get("image_size", 224))
    patch = _pair(c.get("patch_size", 16 if family == "vit" else 4))
    num_classes = c.get("num_classes", 1000)
    if not num_classes:
        raise ValueError(f"{registry_name}: num_classes=0 (no head) is not benchmarked.")
    if c.get("classifier_activation") not in (None, "linear"):
        raise ValueError(f"{registry_name}: timm's heads return logits, not {c['classifier_activation']!r}.")
    common = dict(img_size=image, in_chans=c.get("in_channels", 3), num_classes=num_classes,
                  mlp_ratio=c.get("mlp_ratio", 4.0), qkv_bias=c.get("qkv_bias", True), drop_rate=0.0,
                  proj_drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
    if family == "vit":
        if c.get("attention", "global") != "global":
            raise ValueError(f"{registry_name}: attention={c['attention']!r} has no timm counterpart.")
        pooling = c.get("pooling", "token")
        if pooling not in ("token", "mean"):
            raise ValueError(f"{registry_name}: pooling={pooling!r} has no timm counterpart.")
        return family, dict(
            common, patch_size=patch, embed_dim=c.get("embed_dim", 768), depth=c.get("depth", 12),
            num_heads=c.get("num_heads", 12), class_token=c.get("class_token", True),
            global_pool="token" if pooling == "token" else "avg", fc_norm=False, pos_drop_rate=0.0,
            norm_epsilon=c.get("norm_epsilon", 1e-6))
    if patch[0] != patch[1]:
        raise ValueError(f"{registry_name}: timm's Swin takes a square patch, not {patch}.")
    if c.get("norm_epsilon", 1e-5) != 1e-5:
        raise ValueError(f"{registry_name}: the timm mapping uses nn.LayerNorm's epsilon 1e-5.")
    return family, dict(
        common, patch_size=patch[0], embed_dim=c.get("embed_dim", 96), depths=tuple(c.get("depths", (2, 2, 6, 2))),
        num_heads=tuple(c.get("num_heads", (3, 6, 12, 24))), window_size=c.get("window_size", 7),
        global_pool="avg")


def build_tfvit(registry_name):
    import tfvit

    return tfvit.create_model(registry_name, **TFVIT_OVERRIDES)


def build_keras_hub(registry_name):
    import keras_hub

    family, backbone_args, classifier_args = keras_hub_arguments(registry_name)
    if family == "vit":
        backbone = keras_hub.models.ViTBackbone(**backbone_args)
        return keras_hub.models.ViTImageClassifier(backbone, **classifier_args)
    backbone = keras_hub.models.SwinTransformerBackbone(**backbone_args)
    return keras_hub.models.SwinTransformerImageClassifier(backbone, **classifier_args)


def build(impl, registry_name):
    """The Keras model of ``impl`` ("tfvit" or "keras_hub"); timm's is PyTorch (tools.benchmark_torch)."""
    if impl == "tfvit":
        return build_tfvit(registry_name)
    if impl == "keras_hub":
        return build_keras_hub(registry_name)
    raise ValueError(f"impl={impl!r}: build makes the Keras models (tfvit, keras_hub); timm's is "
                     f"tools.benchmark_torch.build_timm.")
