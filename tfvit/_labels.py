"""The labels that ``fit`` and ``evaluate`` give a classification loss, checked against the loss and the model.

A class index outside [0, num_classes), one-hot labels for a sparse loss or class indices for a one-hot loss
otherwise end in a TensorFlow graph trace or a Keras rank error (or, on a GPU, a NaN loss), far from the
mistake. ``classification_labels`` wraps ``fit`` / ``evaluate`` of tfvit's models and of
``GradientAccumulationModel``: it checks the labels at hand before any step, and translates the errors that a
dataset's labels raise inside a step into one ValueError that names the value or shape and what fits.
"""

import ast
import contextlib
import re

import numpy as np

# Keras's classification losses by the labels they take: class indices, or one column per class.
_SPARSE_LOSSES = ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy")
_ONE_HOT_LOSSES = ("CategoricalCrossentropy", "categorical_crossentropy", "CategoricalFocalCrossentropy",
                   "categorical_focal_crossentropy")
# What the label errors raised inside a compiled train or test step say (TensorFlow's kernel; Keras's loss checks).
_LABEL_RANGE = re.compile(r"Received a label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)")
_TARGET_SHAPE = re.compile(r"must have (?:the same )?(?:rank|shape).*?target\.shape=(\([^)]*\))", re.S)


def output_classes(model):
    """The number of classes of a functional classifier with one (batch, classes) output; None otherwise."""
    outputs = getattr(model, "outputs", None)
    if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2:
        return outputs[0].shape[-1]
    return None


def _loss_kind(loss):
    """("sparse" | "one_hot" | None, the loss's name) of a compiled loss: a name, a function or a Loss object."""
    if isinstance(loss, str):
        names = [loss]
    else:  # a Loss subclass counts as its Keras base; a function by its name
        names = [getattr(loss, "__name__", None)] + [klass.__name__ for klass in type(loss).__mro__]
    shown = loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
    if any(name in _SPARSE_LOSSES for name in names):
        return "sparse", shown
    if any(name in _ONE_HOT_LOSSES for name in names):
        return "one_hot", shown
    return None, shown


def _values(labels):
    """Labels as a numeric numpy array when their values are at hand (arrays, lists, eager tensors), else None
    (a dataset or generator carries its own labels; a dict feeds several outputs)."""
    if labels is None or isinstance(labels, dict):
        return None
    try:
        values = labels.numpy() if callable(getattr(labels, "numpy", None)) else np.asarray(labels)
    except Exception:  # noqa: BLE001 - anything that does not convert holds no labels to check here
        return None
    return values if values.dtype.kind in "biuf" and values.ndim else None


def _range_error(where, bad, num_classes, loss):
    bad = sorted(set(int(v) for v in bad))
    shown = ", ".join(map(str, bad[:5])) + (f", ... ({len(bad)} values)" if len(bad) > 5 else "")
    more = (f", or build the model with num_classes={bad[-1] + 1} if there are that many classes"
            if bad[-1] >= num_classes else "")
    return ValueError(
        f"{where}: labels hold {shown}, outside the valid range 0..{num_classes - 1} of a model with "
        f"num_classes={num_classes} (loss {loss} takes class indices in [0, num_classes)). Fix the labels{more}."
    )


def _shape_error(where, shape, kind, num_classes, loss):
    classes = num_classes if num_classes is not None else "num_classes"
    if kind == "sparse":
        looks = ("These look one-hot (one column per class): compile with keras.losses.CategoricalCrossentropy, "
                 "or pass the class indices, np.argmax(labels, axis=-1).") if shape[-1] == num_classes else (
                 "Pass one integer class index per image.")
        return ValueError(
            f"{where}: labels of shape {shape} were given to loss {loss}, which takes one class index per image "
            f"(labels of shape {(shape[0],)}). {looks}"
        )
    if len(shape) == 1 or shape[-1] == 1:
        looks = (f"These look like class indices: compile with keras.losses.SparseCategoricalCrossentropy, or pass "
                 f"them one-hot, keras.utils.to_categorical(labels, {classes}).")
    else:
        looks = f"The model has num_classes={classes}: give one column per class."
    return ValueError(
        f"{where}: labels of shape {shape} were given to loss {loss}, which takes one-hot labels of shape "
        f"{(shape[0], classes)}. {looks}"
    )


def _check_labels(labels, kind, num_classes, loss, where, ignore_class=None):
    """Raise the ValueError of labels at hand that the loss (of ``kind``) cannot take from this model."""
    values = _values(labels)
    if values is None or kind is None:
        return
    shape = tuple(values.shape)
    if kind == "sparse":
        if values.ndim > 1 and shape[-1] != 1:
            raise _shape_error(where, shape, kind, num_classes, loss)
        if num_classes is not None and values.size:
            bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_class)]
            if bad.size:
                raise _range_error(where, bad, num_classes, loss)
    elif num_classes != 1:  # one-hot: one column per class (a single output takes a single column)
        indices = values.ndim == 1 or shape[-1] == 1
        if indices or (num_classes is not None and shape[-1] != num_classes):
            raise _shape_error(where, shape, kind, num_classes, loss)


@contextlib.contextmanager
def classification_labels(loss, num_classes, where, y=None, validation_data=None):
    """Around ``fit`` / ``evaluate`` of a classifier with ``num_classes`` outputs (None: unknown): labels that
    do not fit the compiled ``loss`` (a class index outside [0, num_classes), one-hot labels for a sparse loss,
    class indices for a one-hot loss) raise one ValueError saying so and what fits, instead of a TensorFlow
    graph trace (or, on a GPU, a NaN loss). Labels at hand (``y``, ``validation_data``'s) are checked before
    any step runs; the errors that labels of a dataset raise inside a step are translated, ``from None``."""
    kind, name = _loss_kind(loss)
    ignore = getattr(loss, "ignore_class", None)  # SparseCategoricalCrossentropy(ignore_class=-1) skips that label
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        _check_labels(validation_data[1], kind, num_classes, name, f"{where} (validation_data)", ignore)
    _check_labels(y, kind, num_classes, name, where, ignore)
    try:
        yield
    except Exception as error:
        explained = _explained(str(error), kind, num_classes, name, where)
        if explained is None:
            raise
        raise explained from None


def _explained(message, kind, num_classes, loss, where):
    """The ValueError that explains a label error raised inside a step (its message), or None."""
    found = _LABEL_RANGE.search(message)
    if found:
        return _range_error(where, [int(found.group(1))], num_classes or int(found.group(2)), loss)
    found = _TARGET_SHAPE.search(message)
    if found and kind is not None:
        try:
            shape = tuple(ast.literal_eval(found.group(1)))
        except (ValueError, SyntaxError):
            return None
        return _shape_error(where, shape, kind, num_classes, loss)
    return None
