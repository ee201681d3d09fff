"""Argument checks shared by the saliency methods (``gradcam``, ``attention_rollout``).

Each turns a wrong argument into a ValueError that names the calling function and says what to pass
instead (a missing batch axis, an image size that does not match the model, a NaN or infinite pixel, a
class index out of range), before any graph is built or run.
"""

import keras
import numpy as np


def check_images(model, images, where):
    """A (B, H, W, C) batch of finite pixels matching the model's input, as a numpy array of the input's dtype."""
    shape = tuple(getattr(images, "shape", np.shape(images)))
    if len(shape) != 4:
        raise ValueError(
            f"{where}: images must have rank 4 (batch, height, width, channels), got shape {shape}. "
            f"A single image needs a batch axis: images[None]."
        )
    inputs = getattr(model, "inputs", None) if isinstance(model, keras.Model) else None
    if not inputs or len(inputs) != 1:
        raise ValueError(
            f"{where} needs a functional keras.Model with one image input, got {type(model).__name__}."
        )
    expected = tuple(model.inputs[0].shape[1:])
    if len(expected) != 3 or any(e is not None and e != s for e, s in zip(expected, shape[1:])):
        raise ValueError(
            f"{where}: images of shape {shape} do not match the model's input (batch, *{expected}); "
            f"resize them to the model's input size."
        )
    if shape[0] == 0:
        raise ValueError(f"{where}: images is an empty batch (shape {shape}).")
    images = np.asarray(images, dtype=keras.backend.standardize_dtype(model.inputs[0].dtype))
    # One NaN or infinite pixel makes every map of its image NaN (a gradient, a normalised score) or garbage.
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        listed = ", ".join(map(str, bad[:10])) + (f", ... ({len(bad)} in all)" if len(bad) > 10 else "")
        raise ValueError(
            f"{where}: images must be finite, but image(s) at index {listed} hold NaN or infinite pixels; their "
            f"maps would be NaN. Drop or repair them (np.isfinite(images).all(axis=(1, 2, 3)) selects the finite "
            f"images)."
        )
    return images


def check_class_index(class_index, logits):
    """One class per image: None -> argmax of the logits, an int -> repeated, a sequence -> as given."""
    batch, num_classes = logits.shape
    if class_index is None:
        return np.argmax(logits, axis=-1)
    if isinstance(class_index, (bool, np.bool_)):  # ValueError for every bad argument, as all of tfvit
        raise ValueError(  # noqa: TRY004
            f"class_index must be None, an int or a sequence of ints, got {class_index!r}."
        )
    if np.ndim(class_index) == 0:
        classes = np.full(batch, class_index)
    else:
        classes = np.asarray(class_index)
        if classes.ndim != 1 or len(classes) != batch:
            raise ValueError(
                f"class_index must give one class per image: expected {batch} values, got shape "
                f"{np.shape(class_index)}."
            )
    if classes.dtype.kind not in "iu" and not (
        classes.dtype.kind == "f" and np.all(classes == np.round(classes))
    ):
        raise ValueError(f"class_index must be integers, got {class_index!r}.")
    classes = classes.astype(np.int64)
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"class_index must lie in [0, {num_classes}) for this model, got {class_index!r}.")
    return classes
