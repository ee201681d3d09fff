"""Faithfulness of saliency maps on real images: the deletion and insertion curves of RISE.

Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of Black-box Models", section 4.1:
pixels are ranked by the map, most salient first. *Deletion* removes them in that order (each removed pixel takes
the image's mean colour here, a neutral value under any input normalisation) and records the class probability;
a faithful map makes it fall fast, so the area under the curve is small. *Insertion* starts from a blurred copy
of the image and puts the original pixels back in that order; a faithful map makes the probability rise fast,
so the area is large. The curves are sampled at ``steps`` + 1 evenly spaced fractions of the pixels, and the
area is the trapezoid rule over the fraction in [0, 1]. A random map is the baseline both must beat.
"""

import numpy as np

from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.scores import logits_model, predict_logits


def _blur(images, sigma):
    """Separable Gaussian blur per channel, edges reflected: the insertion curve's starting canvas."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = images
    for axis in (1, 2):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in range(4)], mode="reflect")
        out = sum(w * np.take(padded, np.arange(out.shape[axis]) + k, axis=axis) for k, w in enumerate(taps))
    return out.astype(images.dtype)


def _probabilities(model, batch, classes, batch_size):
    logits = predict_logits(model, batch, batch_size).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities[np.arange(len(batch)), classes]


def deletion_insertion(model, images, maps, class_index=None, steps=32, blur_sigma=None, batch_size=256):
    """Deletion and insertion curves of ``maps`` (B, H, W) for ``model`` on ``images`` (B, H, W, C).

    Returns a dict: ``deletion_auc`` and ``insertion_auc`` (B,) arrays, and the curves ``deletion`` and
    ``insertion`` (B, steps + 1) of the class probability against the fraction of pixels removed / inserted.
    The class is the predicted one unless ``class_index`` is given. ``blur_sigma`` defaults to a tenth of the
    image's side.
    """
    images = check_images(model, images, where="deletion_insertion")
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != images.shape[:3]:
        raise ValueError(f"maps must have shape {images.shape[:3]} (one per image, at the input's size), "
                         f"got {maps.shape}.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    scorer = logits_model(model)
    classes = check_class_index(class_index, predict_logits(scorer, images, batch_size))
    batch, height, width, _ = images.shape
    pixels = height * width
    # Most salient first; a stable sort on the negated map keeps ties in row-major order.
    order = np.argsort(-maps.reshape(batch, -1), axis=1, kind="stable")
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(int)
    removed_fill = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
    blurred = _blur(images, blur_sigma or max(height, width) / 10)
    curves = {}
    for name, start, end in (("deletion", images, removed_fill), ("insertion", blurred, images)):
        canvases = []
        for count in counts:
            chosen = np.zeros((batch, pixels), bool)
            np.put_along_axis(chosen, order[:, :count], True, axis=1)
            chosen = chosen.reshape(batch, height, width, 1)
            canvases.append(np.where(chosen, end, start))
        flat = np.concatenate(canvases)  # (steps + 1) * B images, step-major
        curves[name] = _probabilities(scorer, flat, np.tile(classes, len(counts)), batch_size).reshape(
            len(counts), batch).T
    fractions = counts / pixels
    return {
        "deletion": curves["deletion"], "insertion": curves["insertion"],
        "deletion_auc": np.trapezoid(curves["deletion"], fractions, axis=1),
        "insertion_auc": np.trapezoid(curves["insertion"], fractions, axis=1),
    }
