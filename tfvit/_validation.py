"""Argument checks shared by layers and models.

Every public entry point validates what it is given and raises ``ValueError`` naming the argument, the
value received and what was expected, so a user sees the real problem instead of a shape error deep
inside a matmul.
"""

import numbers


def as_pair(name, value):
    """Return ``value`` as a ``(height, width)`` tuple of positive ints (an int means a square)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}.")
    for v in pair:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must contain positive integers, got {value!r}.")
    return (int(pair[0]), int(pair[1]))


def positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
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
