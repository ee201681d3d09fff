"""Class activation maps of the Grad-CAM family, computed through tf-keras-vis.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", eqs. 1-2): for feature maps A^k of a layer and the class logit y^c,
    alpha_k = mean_ij dy^c / dA^k_ij,    L^c = ReLU(sum_k alpha_k A^k).
Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) weights each position's positive gradient by
    a^kc_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3),   g = dy^c / dA^k_ij.
LayerCAM (Jiang et al. 2021) keeps the gradient per position: L^c = ReLU(sum_k ReLU(g^k_ij) A^k_ij).
Score-CAM (Wang et al. 2020) needs no gradient: each map, upsampled and min-max scaled, masks the
image, and the class probability of the masked image is its weight.

This module is the public entry point and the glue to tf-keras-vis, which computes the maps. Which
layer is explained is decided in ``tfvit.vis.targets``; the wrapper model that exposes that layer's
output as a feature map on the path to the logits is ``tfvit.vis.grid_model``; the maps are resized
and scaled by ``tfvit.vis.maps``.
"""

import warnings

import keras
import numpy as np
import tensorflow as tf

from tfvit.vis.grid_model import saliency_model
from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.maps import normalize_maps, resize_maps

METHODS = ("gradcam", "gradcam++", "scorecam", "layercam")


def gradcam(model, images, class_index=None, method="gradcam", layer=None, upsample=True):
    """Class activation maps of ``images`` (B, H, W, C) for ``model``: float32 (B, H, W), each in [0, 1].

    Args:
        model: a functional Keras classifier. The score is the class logit, as Grad-CAM prescribes: a
            softmax (or other activation) on a final Dense, Activation or Softmax layer is bypassed.
            tfvit ViT and Swin models and CNNs with a 4D feature map work.
        class_index: None for each image's predicted class, an int for the same class on every
            image, or a sequence with one class per image.
        method: "gradcam", "gradcam++", "scorecam" or "layercam".
        layer: name of the layer whose output is the feature map (tokens are reshaped to the patch
            grid), or "blocks.i/norm1" for the first LayerNorm inside a ViT block. Default
            (``default_target_layer``): a ViT whose head reads the class token, the last block's norm1
            (as pytorch-grad-cam; the last block's own output gets no gradient at the patches, since
            only the class token reaches the head); a ViT pooling the patch tokens and a Swin, the
            final ``norm``, where Grad-CAM is exactly CAM (Zhou et al. 2016), since the logit is a
            linear function of the mean of that grid; any other model, the last layer with a 4D output.
        upsample: resize to the input's H x W (bilinear, half-pixel centres); False returns the grid.

    The maps are min-max scaled per image; a map that is zero everywhere (no positive evidence) stays
    zero. On transformers the last layers' tokens have exchanged information, so their maps can be
    coarse or miss the object. Measured (docs/saliency.md, ``python -m tools.saliency_eval pointing``): on
    a small class-token ViT trained to find a coloured square, this default target marks the square as a
    hole (tests/vis/test_explain.py keeps that as a documented limit), and on a small Swin the default map
    covers the square's shifted windows. ``tfvit.vis.explain`` picks, per model family, a method measured
    to point at the evidence.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    images = check_images(model, images, where="gradcam")
    wrapper = saliency_model(model, layer)
    logits = wrapper.logits(images)
    classes = check_class_index(class_index, logits)

    with warnings.catch_warnings():
        # tf-keras-vis 0.8.7 imports zoom from scipy.ndimage.interpolation, deprecated since SciPy 1.8.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="tf_keras_vis")
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore(classes.tolist())
    if method == "gradcam++":
        # Grad-CAM++ uses exp(score) as the class score; the factor exp(y^c) is the same at every position
        # and cancels in the normalised map, so score with y^c - y^c (value 0, gradient dy^c) to keep exp
        # from overflowing to inf (and the map to NaN) on confident logits.
        score = _zero_valued(score)
    visualizer = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam, "layercam": Layercam}
    # expand_cam=False: the maps are resized here, with pixel centres aligned (see resize_maps), instead of
    # tf-keras-vis's scipy zoom, which pins the grid's corner cells to the image's corner pixels.
    options = {"penultimate_layer": wrapper.feature_layer, "seek_penultimate_conv_layer": False,
                   "expand_cam": False, "normalize_cam": False}
    interactive = keras.config.is_interactive_logging_enabled()
    try:
        if method == "scorecam":
            keras.config.disable_interactive_logging()  # Score-CAM's predict() would print progress bars
        cams = visualizer[method](wrapper.model)(score, [images], **options)
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    cams = np.asarray(cams, dtype=np.float32)
    if upsample:
        cams = resize_maps(cams, images.shape[1:3])
    return normalize_maps(cams)


def _zero_valued(score):
    def shifted(output):
        value = score(output)
        return value - tf.stop_gradient(value)

    return shifted
