"""The class score every saliency method explains: the class logit, before any output activation.

Grad-CAM prescribes the logit y^c (Selvaraju et al. 2017, section 3), and the path and perturbation
methods (Integrated Gradients, occlusion, RISE) use it too, so that one score is explained by every
method and a saturating softmax does not flatten the differences a perturbation makes. ``logits_model``
wraps a functional model once (cached per model) so that its output is that logit.
"""

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
            _LOGIT_MODELS[model] = model
        else:
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            _LOGIT_MODELS[model] = keras.Model(inputs, logits, name=f"{model.name}_logits")
    return _LOGIT_MODELS[model]


def class_scores(logits, classes):
    """The logit of each image's class: (B, K) logits and (B,) classes -> (B,) scores (numpy or tensor)."""
    if isinstance(logits, np.ndarray):
        return logits[np.arange(len(classes)), classes]
    from keras import ops

    return ops.take_along_axis(logits, ops.convert_to_tensor(np.asarray(classes)[:, None]), axis=1)[:, 0]
