"""Post-processing of saliency maps, shared by Grad-CAM and attention rollout.

Min-max scaling per map: a saliency method's values have no common unit (a gradient-weighted
activation, a flow of attention), so each map is scaled to [0, 1] on its own. Upsampling with
half-pixel centres: the cell (i, j) of an h x w grid covering an H x W image is centred on pixel
((i + 0.5) H / h - 0.5, (j + 0.5) W / w - 0.5); interpolating between those centres (as
``tf.image.resize`` does) keeps a map aligned with the patches it came from, where pinning the grid's
corner cells to the image's corner pixels would shift every inner cell towards the border.
"""

import numpy as np
import tensorflow as tf


def normalize_maps(maps):
    """Min-max scale each map of a (B, ...) batch to [0, 1]; a constant map becomes zeros."""
    maps = np.asarray(maps, dtype=np.float32)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    # A span at rounding level (relative to the map's own magnitude) carries no information: scaling it
    # up would only draw float noise.
    flat = span <= 1e-6 * np.maximum(np.abs(low), np.abs(low + span))
    return np.where(flat, 0.0, (maps - low) / np.where(flat, 1.0, span)).astype(np.float32)


def resize_maps(maps, size):
    """Bilinear resize of (B, h, w) maps to ``size`` = (H, W), pixel centres aligned.

    Cell (i, j) of an h x w grid covering an H x W image is centred on pixel ((i + 0.5) H / h - 0.5,
    ...), so its value is placed there (half-pixel centres, as ``tf.image.resize``), not at the image
    corners; edges are clamped.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == tuple(size):
        return maps
    resized = tf.image.resize(maps[..., None], size, method="bilinear", antialias=False)
    return resized.numpy()[..., 0]
