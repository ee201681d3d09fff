"""Saliency maps and figures: Grad-CAM, Grad-CAM++, Score-CAM and LayerCAM (through tf-keras-vis),
attention rollout, overlay figures and TensorBoard images.

    cams = tfvit.vis.gradcam(model, images)                  # (B, H, W) in [0, 1]
    flow = tfvit.vis.attention_rollout(vit, images)
    tfvit.vis.overlay_grid(images, {"Grad-CAM": cams, "rollout": flow}, path="saliency.png")
"""

from tfvit.vis.maps import normalize_maps, resize_maps
from tfvit.vis.plots import blend, display_images, overlay_grid, write_tensorboard_images
from tfvit.vis.rollout import HEAD_FUSIONS, attention_rollout, attention_weights, rollout, rollout_applies
from tfvit.vis.saliency import METHODS, gradcam
from tfvit.vis.targets import default_target_layer

__all__ = [
    "HEAD_FUSIONS", "METHODS", "attention_rollout", "attention_weights", "blend", "default_target_layer",
    "display_images", "gradcam", "normalize_maps", "overlay_grid", "resize_maps", "rollout", "rollout_applies",
    "write_tensorboard_images",
]
