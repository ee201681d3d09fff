"""A gather by a static index whose gradient is a gather too.

Tiled attention reads tokens into tiles and halos with ``take(x, index, axis)`` for a fixed index. The
gradient is the scatter-add
    dL/dx[n] = sum_{i : index[i] = n} dL/dy[i].
TensorFlow computes it as ``unsorted_segment_sum``, after moving the gathered axis to the front and
back (two transposes) when it is not axis 0. The index is known when the graph is built, so the
scatter can be turned around: ``inverse[n]`` lists the (at most M) places that read token n, padded with
a place that holds zeros, and
    dL/dx[n] = sum_m dL/dy_padded[inverse[n, m]]
is one gather of M slices per token and a sum over M: no transposes, no atomic adds. M is the most
times one token is read (1 for a permutation, at most ceil(halo / tile)^2 for tiled halos). On JAX the
gather's derivative is XLA's scatter-add, which the compiler fuses already, so this is ``take``.
"""

import keras
import numpy as np
from keras import ops


def inverse_index(index, length, live=None):
    """(length, M) int array: the positions i of ``index`` with index[i] = n, for each n in 0 .. length-1,
    padded with len(index) (a zero row appended to the gradient); M is the largest count (at least 1).
    ``live`` (bool, like index) leaves out the positions whose gradient the caller knows is zero."""
    index = np.asarray(index).reshape(-1)
    positions = np.arange(len(index)) if live is None else np.flatnonzero(np.asarray(live).reshape(-1))
    targets = index[positions]
    counts = np.bincount(targets, minlength=length)
    inverse = np.full((length, max(int(counts.max(initial=0)), 1)), len(index), np.int32)
    order = np.argsort(targets, kind="stable")
    rank = np.arange(len(targets)) - np.repeat(np.cumsum(counts) - counts, counts)
    inverse[targets[order], rank] = positions[order]
    return inverse


def take_static(x, index, axis, live=None):
    """``ops.take(x, index, axis)`` for a static 1-D int index into a static-length axis; on TensorFlow
    its gradient is a gather by ``inverse_index`` (see the module docstring), summed in float32.

    ``live``: optional bool mask over ``index``; the gradient arriving at the positions it marks False
    must be exactly zero (a masked key, a query whose output is dropped). They are not read back, which
    keeps M, the reads per token, small. Passing it for a position with a nonzero gradient is a bug."""
    index = np.asarray(index, dtype=np.int32).reshape(-1)
    length = x.shape[axis]
    if length is None:
        raise ValueError(f"take_static needs a static length along axis {axis}, got shape {tuple(x.shape)}.")
    if np.array_equal(index, np.arange(length)):
        return x  # e.g. one tile covering the grid in order: nothing to gather
    if keras.backend.backend() != "tensorflow":
        return ops.take(x, index, axis=axis)
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    axis = axis % len(x.shape)
    inverse = inverse_index(index, length, live)
    reads = inverse.shape[1]

    @tf.custom_gradient
    def gather(values):
        def gradient(upstream):
            padding = [[0, 0]] * len(values.shape)
            padding[axis] = [0, 1]
            padded = tf.pad(upstream, padding)
            if reads == 1:
                return tf.gather(padded, inverse[:, 0], axis=axis)
            # One read at a time, accumulated: no (length, M) intermediate. float32: a bfloat16 sum of
            # M terms would round M - 1 times.
            total = tf.cast(tf.gather(padded, inverse[:, 0], axis=axis), tf.float32)
            for read in range(1, reads):
                total += tf.cast(tf.gather(padded, inverse[:, read], axis=axis), tf.float32)
            return tf.cast(total, upstream.dtype)

        return tf.gather(values, index, axis=axis), gradient

    return gather(x)
