"""``explain``: one call for a saliency map that points at the evidence, whatever the model family.

    maps = tfvit.vis.explain(model, images)                  # (B, H, W) in [0, 1], the predicted classes
    maps = tfvit.vis.explain(model, images, class_index=3, method="occlusion")  # 361 passes per image, RISE 2000

Which method is faithful depends on the model. ``AUTO`` is the choice per family, made by measurement:
docs/saliency.md has the table (pointing game and class-specificity on synthetic tasks, deletion and insertion
on CIFAR-10, the randomisation check) and the command that produces it, ``python -m tools.saliency_eval``.
The families are told apart by ``model_family``: a ViT whose head reads the class token, a ViT that pools its
patch tokens, a ViT with Performer or local attention (no explicit N x N attention matrix), a Swin, and any
other functional classifier (a CNN).

Every method returns float32 (B, H, W) maps at the input's resolution, min-max scaled per image, explaining the
class logit of the predicted class or of ``class_index`` (an int, or one per image); a method that is not
class-specific (``NOT_CLASS_SPECIFIC``: attention rollout) refuses a ``class_index`` rather than ignore it. A method
that cannot read a model (attention rollout on a Swin) raises a ValueError saying which methods can, and images
with a NaN or infinite pixel are refused (their maps would be NaN).
"""

from tfvit.vis.inputs import check_images
from tfvit.vis.integrated_gradients import integrated_gradients
from tfvit.vis.occlusion import occlusion
from tfvit.vis.relevance import attention_relevance, relevance_applies
from tfvit.vis.rise import rise
from tfvit.vis.rollout import attention_rollout, rollout_applies
from tfvit.vis.saliency import gradcam
from tfvit.vis.smoothgrad import smoothgrad

FAMILIES = ("vit_token", "vit_mean", "vit_efficient", "swin", "cnn")

# The Grad-CAM family's target per model family, chosen by measurement (docs/saliency.md), where
# ``tfvit.vis.gradcam``'s default follows convention (pytorch-grad-cam's last block for a ViT).
GRADCAM_TARGETS = {"vit_token": "patch_embed", "vit_mean": "patch_embed", "vit_efficient": "patch_embed",
                   "swin": "patch_embed", "cnn": None}

# What method="auto" runs per family; docs/saliency.md has the measurements behind each entry.
AUTO = {"vit_token": "rise", "vit_mean": "rise", "vit_efficient": "rise", "swin": "rise", "cnn": "gradcam"}


def model_family(model):
    """Which of ``FAMILIES`` a model belongs to (any model that is no tfvit ViT or Swin counts as "cnn")."""
    from tfvit.models import SwinTransformer, VisionTransformer

    if isinstance(model, SwinTransformer):
        return "swin"
    if isinstance(model, VisionTransformer):
        config = model.get_config()
        if config["attention"] != "global":
            return "vit_efficient"
        return "vit_token" if config["class_token"] and config["pooling"] == "token" else "vit_mean"
    return "cnn"


def _cam(kind):
    def run(model, images, class_index=None, upsample=True, layer=None, **options):
        if layer is None:
            layer = GRADCAM_TARGETS[model_family(model)]
        return gradcam(model, images, class_index=class_index, method=kind, layer=layer, upsample=upsample,
                       **options)

    return run


def _rollout(model, images, class_index=None, upsample=True, **options):
    # Rollout explains the image, not a class (Abnar & Zuidema 2020): a class_index would be silently ignored.
    if class_index is not None:
        class_specific = [name for name in applicable_methods(model) if name not in NOT_CLASS_SPECIFIC]
        raise ValueError(
            f"explain: method 'rollout' (attention rollout) is not class-specific: it explains the image, not a "
            f"class, so class_index={class_index!r} would be ignored. Leave class_index out, or pick a "
            f"class-specific method: {', '.join(class_specific)}."
        )
    return attention_rollout(model, images, upsample=upsample, **options)


EXPLAIN_METHODS = {
    "gradcam": _cam("gradcam"), "gradcam++": _cam("gradcam++"), "scorecam": _cam("scorecam"),
    "layercam": _cam("layercam"), "smoothgrad": smoothgrad, "rollout": _rollout, "relevance": attention_relevance,
    "integrated_gradients": integrated_gradients, "occlusion": occlusion, "rise": rise,
}
# Methods that read attention weights, and the test of whether a model has the weights they read.
_NEEDS = {"rollout": rollout_applies, "relevance": relevance_applies}
# Methods whose map is the same whatever the class: they refuse a class_index rather than ignore it.
NOT_CLASS_SPECIFIC = ("rollout",)


def applicable_methods(model):
    """The names of ``EXPLAIN_METHODS`` that can explain ``model``."""
    return [name for name in EXPLAIN_METHODS if name not in _NEEDS or _NEEDS[name](model)]


def explain(model, images, class_index=None, method="auto", upsample=True, **options):
    """Saliency maps of ``images`` (B, H, W, C) for ``model``: float32 (B, H, W) in [0, 1].

    Args:
        model: a functional Keras classifier; tfvit ViT (any attention, with or without class token), Swin,
            ResNet, or any CNN.
        class_index: None for each image's predicted class, an int for one class on every image, or a
            sequence with one class per image. Refused by the methods in ``NOT_CLASS_SPECIFIC`` ("rollout").
        method: "auto" (``AUTO[model_family(model)]``) or one of ``EXPLAIN_METHODS``: "gradcam", "gradcam++",
            "scorecam", "layercam" (at the target ``GRADCAM_TARGETS`` gives the family, unless ``layer=``),
            "smoothgrad", "rollout" (class-token ViTs; not class-specific), "relevance" (Chefer et al. 2021;
            ViTs with global attention and Swin), "integrated_gradients", "occlusion", "rise".
        upsample: maps at the input's H x W (True) or at the method's own grid where it has one.
        options: passed on to the method (e.g. ``window=`` for occlusion, ``steps=`` for Integrated Gradients).
    """
    if method == "auto":
        method = AUTO[model_family(model)]
    if method not in EXPLAIN_METHODS:
        raise ValueError(f"method must be 'auto' or one of {', '.join(map(repr, EXPLAIN_METHODS))}, got {method!r}.")
    if method in _NEEDS and not _NEEDS[method](model):
        raise ValueError(
            f"method {method!r} cannot explain {type(model).__name__} '{model.name}' (family "
            f"{model_family(model)!r}: it has no attention weights that {method} reads). Methods that can: "
            f"{', '.join(applicable_methods(model))}."
        )
    images = check_images(model, images, where=f"explain (method {method!r})")
    return EXPLAIN_METHODS[method](model, images, class_index=class_index, upsample=upsample, **options)


__all__ = ["AUTO", "FAMILIES", "GRADCAM_TARGETS", "EXPLAIN_METHODS", "NOT_CLASS_SPECIFIC", "applicable_methods",
           "explain", "model_family"]
