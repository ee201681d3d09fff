"""The class score every saliency method explains: the class logit, before any output activation.

Grad-CAM prescribes the logit y^c (Selvaraju et al. 2017, section 3), and the path and perturbation
methods (Integrated Gradients, occlusion, RISE) use it too, so that one score is explained by every
method and a saturating softmax does not flatten the differences a perturbation makes. ``logits_model``
wraps a functional model once (cached per model) so that its output is that logit.
"""

import math
import weakref

import keras
import numpy as np

from tfvit.vis.grid_model import pre_activation_logits

_LOGIT_MODELS = weakref.WeakKeyDictionary()


def logits_model(model):
    """A keras.Model images -> (B, classes) float32 logits sharing ``model``'s layers (built once per model)."""
    if model not in _LOGIT_MODELS:
        logits = pre_activation_logits(model)
        if logits is model.outputs[0]:
            # None, not the model: a value referring to its own weak key would keep the model alive forever.
            _LOGIT_MODELS[model] = None
        else:
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            _LOGIT_MODELS[model] = keras.Model(inputs, logits, name=f"{model.name}_logits")
    return _LOGIT_MODELS[model] or model


def predict_logits(scorer, images, batch_size):
    """The (B, classes) float32 logits of ``scorer`` on ``images``, in batches of ``batch_size``.

    predict_on_batch runs the model's compiled inference function (training=False, no progress bar), about
    2.5x faster than an eager call on the small ViT of tools/saliency_tasks.py.
    """
    return np.concatenate([np.asarray(scorer.predict_on_batch(images[i:i + batch_size]), dtype=np.float32)
                           for i in range(0, len(images), batch_size)])


def fill_values(fill, images):
    """(B, C) values that replace hidden pixels: "mean" (each image's own per-channel mean) or a number."""
    if isinstance(fill, str) and fill == "mean":
        return images.mean(axis=(1, 2))
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (int, float, np.integer, np.floating)) \
            or not math.isfinite(fill):
        raise ValueError(f'fill must be "mean" or a finite number, got {fill!r}.')
    return np.full((len(images), images.shape[-1]), fill, dtype=images.dtype)


def class_scores(logits, classes):
    """The logit of each image's class: (B, K) logits and (B,) classes -> (B,) scores (numpy or tensor)."""
    if isinstance(logits, np.ndarray):
        return logits[np.arange(len(classes)), classes]
    from keras import ops

    return ops.take_along_axis(logits, ops.convert_to_tensor(np.asarray(classes)[:, None]), axis=1)[:, 0]
