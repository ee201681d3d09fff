"""Argument checks shared by layers and models.

Every public entry point validates what it is given and raises ``ValueError`` naming the argument, the
value received and what was expected, so a user sees the real problem instead of a shape error deep
inside a matmul. A keyword argument that nothing accepts raises ``TypeError`` (Python's own error for
an unexpected keyword), naming it and the closest accepted names: ``known_arguments`` for the layers
and models, ``unknown_arguments`` for other entry points (``create_model``). Integers are any
``numbers.Integral`` but bool (Python ints and numpy integers alike). ``tfvit._labels`` does the same for the
labels that ``fit`` and ``evaluate`` give a classification loss.
"""

import difflib
import functools
import inspect
import numbers
import re


# What keras.layers.Layer.__init__ takes besides its keyword parameters (Keras 3.15, layers/layer.py): it pops
# these two from **kwargs (deprecated: it warns) and rejects anything else. Read from its source where it is
# installed as source; this is the fallback.
_LAYER_KWARGS_POPPED = ("input_shape", "input_dim")
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POPPED = re.compile(r"""\bkwargs\.pop\(\s*["'](\w+)["']""")


def integer(value):
    """Whether ``value`` is an integer: any ``numbers.Integral`` (int, numpy integers) except bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _parameter_names(function):
    """A constructor's named parameters (without self), and the names its body pops from **kwargs (as
    keras.layers.LayerNormalization's ``rms_scaling``)."""
    names = [p.name for p in list(inspect.signature(function).parameters.values())[1:] if p.kind in _NAMED]
    try:
        names += _POPPED.findall(inspect.getsource(function))
    except (OSError, TypeError):  # no source installed
        pass
    return names


@functools.cache
def keras_arguments(cls):
    """The keyword arguments that Keras takes from a ``cls`` constructor's **kwargs, read from Keras's
    signatures: ``keras.layers.Layer``'s (name, dtype, trainable, autocast, activity_regularizer, and the
    deprecated input_shape / input_dim) and, where ``cls`` extends a Keras layer (``tfvit.layers.Dense``:
    ``keras.layers.Dense``), that layer's constructor arguments (its signature is its API: not those of
    its own bases, such as the ``rank`` that Conv2D fixes). A functional model takes ``trainable`` and
    ``name`` of these, and ignores the rest as Keras does."""
    import keras

    names = set(_LAYER_KWARGS_POPPED) | set(_parameter_names(keras.layers.Layer.__init__))
    for klass in cls.__mro__:
        if klass is keras.layers.Layer:
            break
        if (klass.__module__.startswith("keras.") and "__init__" in vars(klass)
                and issubclass(klass, keras.layers.Layer) and not issubclass(klass, keras.Model)):
            names.update(_parameter_names(klass.__init__))
            break
    return frozenset(names)


@functools.cache
def constructor_arguments(cls):
    """Every keyword argument ``cls(...)`` accepts: the named parameters of its own constructors along the
    class hierarchy (tfvit's, or a user's subclass) and ``keras_arguments(cls)``."""
    import keras

    names = set(keras_arguments(cls))
    for klass in cls.__mro__:
        if ("__init__" in vars(klass) and issubclass(klass, keras.layers.Layer)
                and not klass.__module__.startswith("keras.")):
            names.update(_parameter_names(klass.__init__))
    return frozenset(names)


def unknown_arguments(where, given, accepted):
    """Raise ``TypeError`` if a name in ``given`` is not in ``accepted``, naming it and, from
    ``difflib.get_close_matches``, the accepted names it may be a misspelling of."""
    _reject(where, [name for name in given if name not in accepted], accepted)


def known_arguments(layer, kwargs):
    """For a tfvit layer or model constructor, before it hands ``kwargs`` on to Keras: raise ``TypeError``
    for any that Keras would reject (a layer) or silently drop (a functional model), suggesting the closest
    of the names its constructor accepts. ``layer`` is the object being built, or its class."""
    cls = layer if isinstance(layer, type) else type(layer)
    passed_on = keras_arguments(cls)
    unknown = [name for name in kwargs if name not in passed_on]
    if unknown:
        _reject(cls.__name__, unknown, constructor_arguments(cls))


def _reject(where, unknown, accepted):
    if not unknown:
        return
    choices = sorted(accepted)
    described = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), choices, n=3)
        described.append((name, " or ".join(repr(c) for c in close)))
    if len(described) == 1:
        name, hint = described[0]
        message = f"{where}: unknown argument {name!r}"
        message += f"; did you mean {hint}?" if hint else f". It takes: {', '.join(choices)}."
    else:
        parts = [f"{name!r}" + (f" (did you mean {hint}?)" if hint else "") for name, hint in described]
        message = f"{where}: unknown arguments {', '.join(parts)}."
        if not all(hint for _, hint in described):
            message += f" It takes: {', '.join(choices)}."
    raise TypeError(message)


def as_pair(name, value):
    """Return ``value`` as a ``(height, width)`` tuple of positive ints (an int means a square)."""
    if integer(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}.")
    for v in pair:
        if not integer(v) or v < 1:
            raise ValueError(f"{name} must contain positive integers, got {value!r}.")
    return (int(pair[0]), int(pair[1]))


def positive_int(name, value):
    if not integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def num_classes(value):
    """A classifier's ``num_classes``: a positive integer, or 0 for a model without a head."""
    if not integer(value) or value < 0:
        raise ValueError(
            f"num_classes must be an integer >= 0 (a positive integer: the number of classes; 0: no head, the "
            f"model returns its pooled features), got {value!r} ({type(value).__name__})."
        )
    return int(value)


def rate(name, value):
    """A probability in [0, 1): dropout and drop-path rates."""
    if not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}.")
    return float(value)


def heads_divide(width_name, width, num_heads):
    """Multi-head attention splits the width evenly over the heads."""
    positive_int("num_heads", num_heads)
    if width % num_heads:
        raise ValueError(
            f"num_heads={num_heads} does not divide {width_name}={width}: each head needs "
            f"{width_name} / num_heads channels."
        )
    return width // num_heads


def image_shape(shape, image_size=None, in_channels=None, patch_size=None, where="model"):
    """Check a batch of NHWC images against what a model or patch embedding expects.

    ``shape`` is the full static shape including the batch axis; ``None`` entries are not checked.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{where} expects images of rank 4 (batch, height, width, channels), got shape {shape} "
            f"(rank {len(shape)}). A single image needs a batch axis: x[None]; a grayscale batch "
            f"(batch, height, width) needs a channel axis: x[..., None]."
        )
    _, height, width, channels = shape
    if in_channels is not None and channels is not None and channels != in_channels:
        if _channels_first(shape, image_size, in_channels):
            raise ValueError(
                f"{where} expects channels-last images (batch, height, width, channels), got shape {shape}, which "
                f"looks channels-first (NCHW: {height} channel(s) of {width} x {channels}). Transpose them to "
                f"channels-last: x.transpose(0, 2, 3, 1) for a numpy array, keras.ops.transpose(x, (0, 2, 3, 1)) "
                f"for a tensor."
            )
        raise ValueError(
            f"{where} expects {in_channels} input channel(s), got {channels} (input shape {shape}). "
            f"Build the model with in_channels={channels}, or convert the images."
        )
    if image_size is not None and height is not None and width is not None:
        if (height, width) != tuple(image_size):
            raise ValueError(
                f"{where} was built for images of size {tuple(image_size)}, got {(height, width)} "
                f"(input shape {shape}). Resize the images or build the model with "
                f"image_size={(height, width)}."
            )
    if patch_size is not None:
        check_patch_grid(patch_size, (height, width), where=where)


def _channels_first(shape, image_size, in_channels):
    """Whether a (B, d1, d2, d3) shape whose last axis is not ``in_channels`` reads as (B, C, H, W): d1 is a channel
    count (the model's, or grey / RGB) and d2, d3 are the expected image size, or d3 is too large for channels."""
    _, first, *spatial = shape
    if first not in (in_channels, 1, 3):
        return False
    if image_size is not None and tuple(spatial) == tuple(image_size):
        return True
    return spatial[1] is not None and spatial[1] > 4  # more than RGBA: a width, not channels


def check_patch_grid(patch_size, size, where="model"):
    """The image must hold at least one patch and a whole number of patches along each axis."""
    ph, pw = patch_size
    for axis, extent, p in (("height", size[0], ph), ("width", size[1], pw)):
        if extent is None:
            continue
        if extent < p:
            raise ValueError(
                f"{where}: image {axis} {extent} is smaller than the patch size {p}; "
                f"use a smaller patch_size or larger images."
            )
        if extent % p:
            raise ValueError(
                f"{where}: image {axis} {extent} is not divisible by the patch size {p}; "
                f"resize or crop the images to a multiple of {p}."
            )
