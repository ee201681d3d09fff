"""Rows of a trainable table read by index, with a dense gradient.

The gradient of ``table[indices]`` with respect to the table is the scatter-add
    dL/dT[r] = sum_{i : indices[i] = r} dL/dout[i].
On TensorFlow, ``tf.gather`` (``keras.ops.take``) hands it to the optimizer as a ``tf.IndexedSlices``
of the unsummed rows, one per index, repeated indices included. Keras 3's Adam and AdamW update such
a gradient row by row: the first moment receives the sum of the rows (correct), the second moment
the sum of their squares instead of the square of their sum (``python -m tools.sparse_adam_check``
reproduces it). Swin's relative-position bias table is read 2401 times through 169 rows for a 7 x 7
window, so every plain ``fit`` with Adam trained it with a wrong second moment. ``take_rows`` does
the scatter-add itself (``unsorted_segment_sum``) and returns the gradient as a dense tensor, which
every optimizer updates correctly; on JAX, whose gather gradient is already dense, it is ``take``.
"""

import keras
import numpy as np
from keras import ops


def take_rows(table, indices):
    """``table[indices]`` along axis 0 (``indices`` a static int array of any shape), whose gradient
    with respect to ``table`` is dense: output shape ``indices.shape + table.shape[1:]``."""
    indices = np.asarray(indices, dtype=np.int32)
    if keras.backend.backend() != "tensorflow":
        return ops.take(table, indices, axis=0)
    import tensorflow as tf

    @tf.custom_gradient
    def lookup(values):
        def gradient(upstream):
            rows = tf.reshape(upstream, tf.concat([[-1], tf.shape(values)[1:]], axis=0))
            return tf.math.unsorted_segment_sum(rows, indices.reshape(-1), tf.shape(values)[0])

        return tf.gather(values, indices), gradient

    return lookup(tf.convert_to_tensor(table))
