"""The public ImageNet checkpoint each registry model maps to, and the preprocessing that goes with it.

    tfvit.create_model("swin_tiny_patch4_window7_224", pretrained=True)   # hf-hub:timm/swin_tiny_...ms_in1k
    tfvit.models.pretrained_source("vit_tiny_patch16_224").preprocessing  # mean/std 0.5, 224x224, bicubic
    tfvit.list_models(pretrained=True)

The registry's names are timm's, so each maps to the Hugging Face hub repository of timm's default pretrained
tag for that architecture (``timm/<name>.<tag>``: weights in ``model.safetensors``, ``config.json`` with the
architecture and its ``pretrained_cfg``). The preprocessing is the one those weights were trained with:
images resized to ``image_size`` with ``interpolation`` and normalised per channel as ``(x - mean) / std`` on
[0, 1] values. ``tfvit.data.load(..., preprocessing=...)`` applies it, and the recipes use it for every run
that starts from a checkpoint. The table is plain data (no hub client, no TensorFlow), so the registry stays
importable on a JAX-only machine; the downloads are ``tfvit.convert.hub``'s.
"""

import dataclasses

HUB_PREFIX = "hf-hub:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # what Google's ViT (and timm's AugReg ViTs) normalise with
INCEPTION_STD = (0.5, 0.5, 0.5)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a pretrained model: resized to ``image_size`` (height, width) with
    ``interpolation`` (a ``tf.image.resize`` method name), scaled to [0, 1], then ``(x - mean) / std`` per
    channel."""

    mean: tuple
    std: tuple
    image_size: tuple = (224, 224)
    interpolation: str = "bicubic"

    def __post_init__(self):
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        size = (self.image_size,) * 2 if isinstance(self.image_size, int) else tuple(int(s) for s in self.image_size)
        if not mean or len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"Preprocessing: mean and std need one value per channel and std > 0; got mean={mean}, "
                             f"std={std}.")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"Preprocessing: image_size must be a positive int or (height, width); got "
                             f"{self.image_size!r}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"Preprocessing: interpolation must be one of {', '.join(INTERPOLATIONS)}; got "
                             f"{self.interpolation!r}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "image_size", size)

    def to_dict(self):
        """A JSON-ready dict (``Preprocessing(**d)`` rebuilds it)."""
        return {"mean": list(self.mean), "std": list(self.std), "image_size": list(self.image_size),
                "interpolation": self.interpolation}


@dataclasses.dataclass(frozen=True)
class PretrainedSource:
    """A registry model's default checkpoint: its hub repository id and the preprocessing of its weights."""

    hub_id: str
    preprocessing: Preprocessing

    @property
    def reference(self):
        """``hf-hub:<hub_id>``, what ``create_model(pretrained=...)`` and ``--checkpoint MODEL=...`` take."""
        return HUB_PREFIX + self.hub_id


def _timm(name, tag, mean, std):
    return PretrainedSource(f"timm/{name}.{tag}", Preprocessing(mean, std, (224, 224), "bicubic"))


# timm's default tag of each architecture (timm.models.get_pretrained_cfg(name); tests/models/test_pretrained.py
# checks every entry against it): AugReg ViTs (Steiner et al. 2022: ImageNet-21k, fine-tuned on ImageNet-1k),
# Microsoft's Swins (Liu et al. 2021; S/B/L through ImageNet-22k).
_SOURCES = {
    "vit_tiny_patch16_224": _timm("vit_tiny_patch16_224", "augreg_in21k_ft_in1k", INCEPTION_MEAN, INCEPTION_STD),
    "vit_small_patch16_224": _timm("vit_small_patch16_224", "augreg_in21k_ft_in1k", INCEPTION_MEAN, INCEPTION_STD),
    "vit_base_patch16_224": _timm("vit_base_patch16_224", "augreg2_in21k_ft_in1k", INCEPTION_MEAN, INCEPTION_STD),
    "vit_base_patch32_224": _timm("vit_base_patch32_224", "augreg_in21k_ft_in1k", INCEPTION_MEAN, INCEPTION_STD),
    "vit_large_patch16_224": _timm("vit_large_patch16_224", "augreg_in21k_ft_in1k", INCEPTION_MEAN, INCEPTION_STD),
    "swin_tiny_patch4_window7_224": _timm("swin_tiny_patch4_window7_224", "ms_in1k", IMAGENET_MEAN, IMAGENET_STD),
    "swin_small_patch4_window7_224": _timm("swin_small_patch4_window7_224", "ms_in22k_ft_in1k", IMAGENET_MEAN,
                                           IMAGENET_STD),
    "swin_base_patch4_window7_224": _timm("swin_base_patch4_window7_224", "ms_in22k_ft_in1k", IMAGENET_MEAN,
                                          IMAGENET_STD),
    "swin_large_patch4_window7_224": _timm("swin_large_patch4_window7_224", "ms_in22k_ft_in1k", IMAGENET_MEAN,
                                           IMAGENET_STD),
}


def pretrained_models():
    """Sorted registry names that have a default checkpoint."""
    return sorted(_SOURCES)


def pretrained_source(name):
    """The ``PretrainedSource`` of registry model ``name``; ValueError naming the models that have one when it
    has none (the small CIFAR / MNIST configurations, ResNet-18: tfvit.convert reads ViT and Swin)."""
    if name not in _SOURCES:
        raise ValueError(
            f"{name!r} has no public pretrained checkpoint in tfvit's registry (the small CIFAR / MNIST configurations "
            f"are trained from scratch). Registry models with one: {', '.join(pretrained_models())}. Any other "
            f"ViT or Swin checkpoint loads with pretrained='hf-hub:ORG/NAME' or a local .safetensors file."
        )
    return _SOURCES[name]
