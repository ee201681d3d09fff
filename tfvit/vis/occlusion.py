"""Occlusion sensitivity: how much the class logit drops when a window of the image is hidden.

Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", section 4.2: slide a grey
window over the image and record the classifier's output for each position. Here, for window positions
k (a w_h x w_w box B_k on a stride grid) and the class logit y^c (``tfvit.vis.scores``),
    d_k = y^c(x) - y^c(x with B_k replaced by the fill),
and the map at pixel p is the weighted mean of the drops of the windows covering it:
    S(p) = sum_k K_k(p) d_k / sum_k K_k(p),
with K_k a tent centred on B_k: K_k(p) = (w_h / 2 - |p_y - c_ky|) (w_w / 2 - |p_x - c_kx|) inside B_k,
0 outside (from (w/2)^2 at the centre down to 1/4 at its corner pixels).

Why a tent and not the plain mean (``kernel="box"``, K_k = 1 on B_k). A model that has to see *all* of
the evidence (or whose logit saturates, so that hiding part of it changes nothing) drops only for the
windows that contain the whole object. With the box kernel every pixel that lies inside all of those
windows gets the same, largest value: a plateau of (w - object + 1) pixels per axis *around* the object,
wider than the object whenever w exceeds it, and the first maximum in row-major order (how a pointing
game breaks ties) sits at its top-left corner, outside the object. The tent gives each window's drop
to its centre pixels most, so the windows holding the object vote for its centre: the map peaks at the
middle of the centres of the windows that matter, which is the middle of the object.
tests/vis/test_occlusion.py builds such a saturating model and asserts that the tent points at the object
where the box does not.

The window must exceed the object by at least a stride, or no window position may hold all of it: hence
the default of a quarter of the side, 8 for 32. docs/saliency.md has the measurement of both choices on
trained models (``python -m tools.saliency_eval defaults``).

The windows overhang the image edges (clipped to it): positions start at -(w - stride), so every pixel,
the border ones included, lies in the same number of windows (w / stride per axis), and an object at a
border is covered by windows centred on both of its sides, as an inner one is. The drops are one forward
pass per (image, window), run in batches of ``batch_size``.
"""


import numpy as np

from tfvit._validation import integer
from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.maps import normalize_maps
from tfvit.vis.progress import PassProgress
from tfvit.vis.scores import class_scores, fill_values, logits_model, predict_logits

KERNELS = ("tent", "box")


def occlusion(model, images, class_index=None, window=None, stride=None, fill="mean", kernel="tent", upsample=True,
              batch_size=256):
    """Occlusion maps of ``images`` (B, H, W, C) for ``model``: float32 (B, H, W), each min-max scaled to [0, 1].

    Args:
        model: a functional Keras classifier; the score is the class logit (a final softmax is bypassed).
        class_index: None for each image's predicted class, an int for every image, or one per image.
        window: the occluding box, an int or (height, width) in pixels. Default: a quarter of each side
            (8 for 32, 56 for 224); it must be able to cover the object, since a model may only change
            its answer once all of the evidence is hidden.
        stride: the step between window positions, an int or (rows, cols), at most the window. Default:
            a quarter of the window (2 for a window of 8); finer costs (window / stride)^2 passes per pixel.
        fill: what replaces the window: "mean" (each image's own per-channel mean, a value the model sees
            anywhere in a natural image) or a number (0.0: black in [0, 1] images).
        kernel: "tent" (default; each window's drop weighted towards its centre pixels, see the module
            docstring) or "box" (the plain mean of the drops of the windows covering a pixel).
        upsample: True returns the per-pixel map (H, W) above; False the grid of drops d_k, one value per
            window position ((H + w - stride) / stride rows, likewise columns), row-major as the windows.
        batch_size: occluded images per forward pass (inference mode).

    A map that is constant (no window changes the logit) is all zeros.

    Cost: one forward pass per image and window position, ((H + w - stride) / stride)^2 per square image:
    361 for 32x32 at the defaults. docs/saliency.md measures the defaults against other windows, kernels
    and fills (``python -m tools.saliency_eval defaults``).
    """
    images = check_images(model, images, where="occlusion")
    height, width = images.shape[1:3]
    window = _pair(window, "window", default=(max(1, round(height / 4)), max(1, round(width / 4))),
                   limit=(height, width))
    stride = _pair(stride, "stride", default=(max(1, round(window[0] / 4)), max(1, round(window[1] / 4))),
                   limit=window)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}.")
    fills = fill_values(fill, images)
    if not integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")

    scorer = logits_model(model)
    logits = predict_logits(scorer, images, batch_size)
    classes = check_class_index(class_index, logits)
    rows = _windows(height, window[0], stride[0])  # (n_rows, 2) [start, stop) clipped to the image
    cols = _windows(width, window[1], stride[1])
    drops = class_scores(logits, classes)[:, None] - _occluded_scores(scorer, images, fills, classes, rows, cols,
                                                                      batch_size)
    drops = drops.reshape(len(images), len(rows), len(cols))
    if not upsample:
        return normalize_maps(drops)
    weight_rows = _weights(height, window[0], stride[0], kernel)  # (n_rows, H): K_k is separable
    weight_cols = _weights(width, window[1], stride[1], kernel)
    total = np.einsum("bij,iy,jx->byx", drops, weight_rows, weight_cols)
    coverage = np.outer(weight_rows.sum(0), weight_cols.sum(0))
    return normalize_maps(total / coverage)


def _pair(value, name, default, limit):
    if value is None:
        return default
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(integer(v) and 1 <= v <= m for v, m in zip(pair, limit)):
        raise ValueError(
            f"{name} must be an int or a (height, width) pair of ints in [1, {limit[0]}] x [1, {limit[1]}], "
            f"got {value!r}."
        )
    return tuple(int(v) for v in pair)


def _starts(size, window, stride):
    """Window starts from -(window - stride) on, every ``stride``, while the window still reaches the image:
    each pixel lies in the same number of windows (window / stride when stride divides it)."""
    return np.arange(-(window - stride), size, stride)


def _windows(size, window, stride):
    starts = _starts(size, window, stride)
    return np.stack([np.maximum(starts, 0), np.minimum(starts + window, size)], axis=1)


def _weights(size, window, stride, kernel):
    """(positions, size): K_k along one axis, the tent w/2 - |t - centre| (or 1) on the window, 0 elsewhere."""
    starts = _starts(size, window, stride)
    pixels = np.arange(size)
    inside = (pixels >= starts[:, None]) & (pixels < starts[:, None] + window)
    if kernel == "box":
        return inside.astype(np.float64)
    centres = starts[:, None] + (window - 1) / 2
    return np.where(inside, window / 2 - np.abs(pixels - centres), 0.0)


def _occluded_scores(scorer, images, fills, classes, rows, cols, batch_size):
    """(B, n_rows * n_cols) class logits of every image with every window filled, in batches of pairs."""
    per_image = len(rows) * len(cols)
    pairs = len(images) * per_image
    scores = np.empty(pairs, dtype=np.float32)
    row_masks = _masks(rows, images.shape[1])
    col_masks = _masks(cols, images.shape[2])
    progress = PassProgress(pairs, "occlusion")
    for start in range(0, pairs, batch_size):
        index = np.arange(start, min(start + batch_size, pairs))
        which, position = np.divmod(index, per_image)
        r, c = np.divmod(position, len(cols))
        hidden = row_masks[r][:, :, None] & col_masks[c][:, None, :]  # (n, H, W)
        batch = np.where(hidden[..., None], fills[which][:, None, None, :], images[which])
        logits = predict_logits(scorer, batch, len(batch))
        scores[index] = class_scores(logits, classes[which])
        progress.advance(len(index))
    return scores.reshape(len(images), per_image)


def _masks(windows, size):
    pixels = np.arange(size)
    return (pixels >= windows[:, :1]) & (pixels < windows[:, 1:])
