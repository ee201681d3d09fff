"""Saliency maps, their evaluation and figures.

    maps = tfvit.vis.explain(model, images)                  # (B, H, W) in [0, 1]: the measured method per family
    cams = tfvit.vis.gradcam(model, images)                  # Grad-CAM family through tf-keras-vis
    tfvit.vis.overlay_grid(images, {"explain": maps, "Grad-CAM": cams}, path="saliency.png")

Methods: Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM and SmoothGrad (tf-keras-vis), attention rollout,
gradient-weighted attention relevance, Integrated Gradients, occlusion and RISE; ``explain`` picks one per
model family (``AUTO``). Evaluation: the pointing game, class-specificity, deletion / insertion curves and the
cascading-randomisation check.
"""

from tfvit.vis.explain import (
    AUTO, EXPLAIN_METHODS, FAMILIES, GRADCAM_TARGETS, NOT_CLASS_SPECIFIC, applicable_methods, explain, model_family,
)
from tfvit.vis.faithfulness import deletion_insertion
from tfvit.vis.integrated_gradients import integrated_gradients
from tfvit.vis.maps import normalize_maps, resize_maps
from tfvit.vis.occlusion import occlusion
from tfvit.vis.plots import blend, display_images, overlay_grid, write_tensorboard_images
from tfvit.vis.pointing import class_specificity, pointing_chance, pointing_hits
from tfvit.vis.relevance import attention_relevance, relevance_applies
from tfvit.vis.rise import rise
from tfvit.vis.rollout import HEAD_FUSIONS, attention_rollout, attention_weights, rollout, rollout_applies
from tfvit.vis.saliency import METHODS, gradcam
from tfvit.vis.sanity import cascading_randomisation, rank_correlation
from tfvit.vis.smoothgrad import smoothgrad
from tfvit.vis.targets import default_target_layer

__all__ = [
    "AUTO", "EXPLAIN_METHODS", "FAMILIES", "GRADCAM_TARGETS", "HEAD_FUSIONS", "METHODS", "NOT_CLASS_SPECIFIC",
    "applicable_methods",
    "attention_relevance", "attention_rollout", "attention_weights", "blend", "cascading_randomisation",
    "class_specificity", "default_target_layer", "deletion_insertion", "display_images", "explain", "gradcam",
    "integrated_gradients", "model_family", "normalize_maps", "occlusion", "overlay_grid", "pointing_chance",
    "pointing_hits", "rank_correlation", "relevance_applies", "resize_maps", "rise", "rollout", "rollout_applies",
    "smoothgrad", "write_tensorboard_images",
]
