"""Integrated Gradients: the gradient of the class logit integrated along the straight path from a baseline.

Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks", eq. 1: for an input x, a
baseline x' and the class logit F (``tfvit.vis.scores``),
    IG_i(x) = (x_i - x'_i) int_0^1 dF(x' + a (x - x')) / dx_i da,
approximated (section 4, the Riemann sum) with the midpoint rule over ``steps`` equal intervals:
    IG_i ~ (x_i - x'_i) / m sum_{k=0}^{m-1} dF / dx_i at a = (k + 1/2) / m.
The midpoint rule's error falls as 1 / m^2, as the trapezoid rule's, with m gradient evaluations where
the trapezoid needs m + 1. IG is exact on a linear model, (x - x') w, for any m, and satisfies
completeness, sum_i IG_i = F(x) - F(x') (the paper's check that enough steps were taken: within a few
percent, 20 to 300 steps); ``integrated_gradients_attributions`` returns the per-channel IG_i for that.

The map of a pixel is sum_c |IG_c|, the magnitude of its attribution summed over its channels. The
absolute value, because a pixel that lowers the logit is as informative about where the model looks as
one that raises it, and the sign of (x - x') depends on the baseline (a dark pixel has none against
black); summed per channel before the channels are added, because a colour is evidence through several
channels at once, often of opposite sign against a grey or mean baseline (a red square: red up, green
and blue down), and a signed sum over channels would cancel exactly that evidence.

The default baseline is each image's own mean colour, not the paper's black. The baseline is the input
that "carries no evidence", and an image the model has never seen the like of does not: the path from
black runs through dark images unlike any training image, where the gradients say little about x
(measured against the mean and grey baselines in docs/saliency.md, ``python -m tools.saliency_eval
defaults``). A pixel equal to its image's mean gets no attribution against "mean" (the
factor x - x' is 0); pass ``baseline=`` a number or an array where that matters.

The gradients are taken with tf.GradientTape on the logits model (a final softmax is bypassed, so that a
saturated probability does not zero the gradient), in batches of (image, step) pairs, inference mode.
"""

import numpy as np
import tensorflow as tf

from tfvit._validation import integer
from tfvit.vis.inputs import check_class_index, check_images
from tfvit.vis.maps import normalize_maps
from tfvit.vis.scores import class_scores, logits_model

BASELINES = ("mean", "black")


def integrated_gradients(model, images, class_index=None, baseline="mean", steps=32, upsample=True, batch_size=64):
    """Integrated-Gradients maps of ``images`` (B, H, W, C): float32 (B, H, W), each min-max scaled to [0, 1].

    Args:
        model: a functional Keras classifier; the score is the class logit (a final softmax is bypassed).
        class_index: None for each image's predicted class, an int for every image, or one per image.
        baseline: x', where the path starts: "mean" (the default: each image's per-channel mean, a flat
            image of its own average colour), "black" (zeros, the paper's choice for images; see the module
            docstring for why it is not the default), a number, or an array that broadcasts to the images'
            shape ((H, W, C), (B, H, W, C), (C,), ...).
        steps: m, the number of gradient evaluations along the path (midpoint rule).
        upsample: accepted for the interface shared with ``gradcam``; IG's map is at the image's
            resolution, (H, W) either way.
        batch_size: interpolated images per gradient pass.

    The map is sum over channels of |IG| (see the module docstring); ``integrated_gradients_attributions``
    gives the signed per-channel attributions.
    """
    del upsample  # the map is at the image's resolution by construction
    attributions = _attributions(model, images, class_index, baseline, steps, batch_size, "integrated_gradients")
    return normalize_maps(np.abs(attributions).sum(axis=-1))


def integrated_gradients_attributions(model, images, class_index=None, baseline="mean", steps=32, batch_size=64):
    """The signed per-channel attributions IG_i: float32 (B, H, W, C), unscaled.

    Their sum over all pixels and channels approximates F(x) - F(x') (completeness), F the class logit;
    the gap shrinks as 1 / steps^2.
    """
    return _attributions(model, images, class_index, baseline, steps, batch_size,
                         "integrated_gradients_attributions")


def _attributions(model, images, class_index, baseline, steps, batch_size, where):
    images = check_images(model, images, where=where)
    baselines = _baselines(baseline, images)
    if not integer(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if not integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    scorer = logits_model(model)
    logits = np.concatenate([np.asarray(scorer(images[i:i + batch_size], training=False), dtype=np.float32)
                             for i in range(0, len(images), batch_size)])
    classes = check_class_index(class_index, logits)

    alphas = (np.arange(steps) + 0.5) / steps  # the midpoints of the m intervals of [0, 1]
    pairs = len(images) * steps
    total = np.zeros(images.shape, dtype=np.float64)  # sum over the steps of dF/dx, per image
    for start in range(0, pairs, batch_size):
        which, step = np.divmod(np.arange(start, min(start + batch_size, pairs)), steps)
        alpha = alphas[step].reshape(-1, 1, 1, 1)
        path = (baselines[which] + alpha * (images[which] - baselines[which])).astype(images.dtype)
        grads = _gradients(scorer, tf.convert_to_tensor(path), classes[which])
        np.add.at(total, which, grads)
    difference = images.astype(np.float64) - baselines.astype(np.float64)
    return (difference * total / steps).astype(np.float32)


def _gradients(scorer, inputs, classes):
    """dF/dx of each input's class logit (the rows are independent, so one gradient of their sum)."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        scores = class_scores(scorer(inputs, training=False), classes)
        total = tf.reduce_sum(tf.cast(scores, tf.float32))
    return np.asarray(tape.gradient(total, inputs), dtype=np.float64)


def _baselines(baseline, images):
    """x' for every image, (B, H, W, C) in the images' dtype."""
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(
                f"baseline must be one of {', '.join(map(repr, BASELINES))}, a number or an array, got {baseline!r}."
            )
        if baseline == "black":
            return np.zeros_like(images)
        return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).astype(images.dtype)
    if isinstance(baseline, (bool, np.bool_)):
        raise ValueError(f"baseline must be a string, a number or an array, got {baseline!r}.")  # noqa: TRY004
    try:
        values = np.asarray(baseline, dtype=np.float64)
        values = np.broadcast_to(values, images.shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"baseline must be one of {', '.join(map(repr, BASELINES))}, a number or an array that broadcasts to "
            f"the images' shape {images.shape}, got {_describe(baseline)}."
        ) from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"baseline must be finite, got {_describe(baseline)} with non-finite values.")
    return values.astype(images.dtype)


def _describe(value):
    shape = np.shape(value) if not isinstance(value, str) else None
    return f"an array of shape {shape}" if shape else repr(value)

