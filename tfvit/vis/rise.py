"""RISE: the class score averaged over random masks, weighted by how much of each pixel every mask kept.

Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
section 3: for masks M_i (i = 1..N) drawn with each pixel kept with probability p (``keep``),
    S(lambda) = 1 / (N p) sum_i f(x . M_i) M_i(lambda),                              (eq. 6)
a Monte-Carlo estimate of E[f(x . M) M(lambda)] / p, the expected score given that pixel lambda is kept.
The masks are the paper's (section 3.2): a binary grid of cells of ``cell`` pixels, each cell kept with
probability p, upsampled bilinearly to (grid + 1) cells and cropped to the image at a random shift of
less than one cell, so that the cell edges fall anywhere and the masks are smooth.

Three choices differ from the paper:
- the masked image is x . M + fill (1 - M) with fill the image's own per-channel mean by default, where
  the paper multiplies (fill 0, black). Black regions are out of distribution for a model that never saw
  them, so the score of a masked image says how the model reacts to black blobs, not only how much
  evidence the mask left visible. ``fill=0.0`` gives the paper's product.
- f is the class logit (``tfvit.vis.scores``, the score every tfvit method explains) by default, where the
  paper uses the probability (``score="probability"``): a confident model's probability saturates, so
  masks that leave the evidence visible all score about 1 whatever share of it they kept; the logit does
  not.
- the scores are centred, f_i - mean_j f_j, before weighting: sum_i (f_i - fbar) M_i differs from eq. 6
  by fbar sum_i M_i, whose expectation is the same constant N p fbar at every pixel (removed by the
  min-max scaling) but whose Monte-Carlo noise grows with |fbar|: a logit of 10 varying by 1 across
  masks would otherwise draw the masks' own unevenness ten times stronger than the evidence.
The fill and the score are measured against the paper's in docs/saliency.md
(``python -m tools.saliency_eval defaults``).
The same N masks explain every image (as the paper's code), drawn from ``seed``: maps are deterministic.
"""

import math

import numpy as np
import tensorflow as tf

from tfvit._validation import integer
from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.maps import normalize_maps
from tfvit.vis.progress import PassProgress
from tfvit.vis.scores import class_scores, fill_values, logits_model, predict_logits

SCORES = ("logit", "probability")


def rise(model, images, class_index=None, num_masks=2000, cell=None, keep=0.5, fill="mean", score="logit", seed=0,
         upsample=True, batch_size=256):
    """RISE maps of ``images`` (B, H, W, C) for ``model``: float32 (B, H, W), each min-max scaled to [0, 1].

    Args:
        model: a functional Keras classifier; the score is the class logit (a final softmax is bypassed).
        class_index: None for each image's predicted class, an int for every image, or one per image.
        num_masks: N, the number of random masks (one forward pass per image and mask); the Monte-Carlo
            noise of the map falls as 1 / sqrt(N).
        cell: the mask's cell size in pixels, an int or (height, width). Default: an eighth of each side
            (4 for 32, 28 for 224, the paper's 7 x 7 grid on 224 is cells of 32).
        keep: p, the probability that a cell is kept, in (0, 1).
        fill: what a masked pixel becomes, x M + fill (1 - M): "mean" (the default, each image's
            per-channel mean) or a number (0.0 is the paper's product x M; see the module docstring).
        score: "logit" (default) or "probability" (the softmax of the logits, the paper's choice).
        seed: seeds the masks; the same seed gives the same masks and maps.
        upsample: accepted for the interface shared with ``gradcam``; RISE's masks are at the image's
            resolution, so the map is (H, W) either way.
        batch_size: masked images per forward pass (inference mode).

    Cost: one forward pass per image and mask, ``num_masks`` per image. docs/saliency.md measures the
    defaults against the paper's fill and score and against fewer masks
    (``python -m tools.saliency_eval defaults``).
    """
    images = check_images(model, images, where="rise")
    height, width = images.shape[1:3]
    if not integer(num_masks) or num_masks < 1:
        raise ValueError(f"num_masks must be a positive integer, got {num_masks!r}.")
    cell = _cell(cell, (height, width))
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (int, float, np.integer, np.floating)) \
            or not 0.0 < keep < 1.0:
        raise ValueError(f"keep must be a probability in (0, 1), got {keep!r}.")
    fills = fill_values(fill, images)
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(map(repr, SCORES))}, got {score!r}.")
    if not integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    if not integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    del upsample  # the map is at the image's resolution by construction

    scorer = logits_model(model)
    logits = predict_logits(scorer, images, batch_size)
    classes = check_class_index(class_index, logits)
    grids, shifts = _draw(num_masks, (height, width), cell, keep, seed)

    chunk = min(num_masks, batch_size)  # masks per batch; images per batch: as many as fit
    group = max(1, batch_size // chunk)
    weighted = np.zeros((len(images), height * width))  # sum_i f_i M_i, float64
    score_sum = np.zeros(len(images))  # sum_i f_i
    mask_sum = np.zeros(height * width)  # sum_i M_i
    progress = PassProgress(num_masks * len(images), "rise")
    for first in range(0, num_masks, chunk):
        masks = _upsample(grids[first:first + chunk], shifts[first:first + chunk], (height, width), cell)
        flat = masks.reshape(len(masks), -1).astype(np.float64)
        mask_sum += flat.sum(0)
        for start in range(0, len(images), group):
            x = images[start:start + group]
            m = masks[None, :, :, :, None]
            batch = (x[:, None] * m + fills[start:start + group, None, None, None, :] * (1.0 - m)).reshape(
                -1, height, width, images.shape[-1])
            out = predict_logits(scorer, batch, len(batch))
            if score == "probability":
                out = np.asarray(tf.nn.softmax(out, axis=-1))
            scores = class_scores(out, np.repeat(classes[start:start + group], len(masks))).reshape(len(x), -1)
            weighted[start:start + group] += scores.astype(np.float64) @ flat
            score_sum[start:start + group] += scores.sum(1)
            progress.advance(scores.size)
    # sum_i (f_i - fbar) M_i / (N p): eq. 6 with centred scores (see the module docstring).
    maps = (weighted - (score_sum / num_masks)[:, None] * mask_sum) / (num_masks * keep)
    return normalize_maps(maps.reshape(len(images), height, width))


def rise_masks(num_masks, size, cell=None, keep=0.5, seed=0):
    """The (num_masks, H, W) float32 masks in [0, 1] that ``rise`` draws for images of ``size`` = (H, W)."""
    size = tuple(size)
    cell = _cell(cell, size)
    grids, shifts = _draw(num_masks, size, cell, keep, seed)
    return _upsample(grids, shifts, size, cell)


def _cell(cell, size):
    if cell is None:
        return tuple(max(1, math.ceil(s / 8)) for s in size)
    pair = (cell, cell) if np.ndim(cell) == 0 else tuple(cell)
    if len(pair) != 2 or not all(integer(c) and 1 <= c <= s for c, s in zip(pair, size)):
        raise ValueError(
            f"cell must be an int or a (height, width) pair of ints in [1, {size[0]}] x [1, {size[1]}], got {cell!r}."
        )
    return tuple(int(c) for c in pair)


def _draw(num_masks, size, cell, keep, seed):
    """All masks' random numbers, drawn at once so that the masks do not depend on the batch size: binary
    (N, ceil(H / cell) + 1, ...) cell grids and (N, 2) shifts in [0, cell)."""
    rng = np.random.default_rng(seed)
    shape = tuple(math.ceil(s / c) + 1 for s, c in zip(size, cell))
    grids = (rng.random((num_masks, *shape)) < keep).astype(np.float32)
    shifts = np.stack([rng.integers(0, c, size=num_masks) for c in cell], axis=1)
    return grids, shifts


def _upsample(grids, shifts, size, cell):
    """Bilinear upsampling of each grid by ``cell`` (half-pixel centres), cropped to ``size`` at its shift."""
    up = tf.image.resize(grids[..., None], [g * c for g, c in zip(grids.shape[1:], cell)], method="bilinear")
    up = up.numpy()[..., 0]
    rows = shifts[:, :1] + np.arange(size[0])  # (n, H)
    cols = shifts[:, 1:] + np.arange(size[1])
    return up[np.arange(len(up))[:, None, None], rows[:, :, None], cols[:, None, :]].astype(np.float32)
