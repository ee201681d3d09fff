"""Stochastic depth: drop a whole residual branch per sample.

Huang et al. 2016, "Deep Networks with Stochastic Depth". In training, each sample's branch output is
multiplied by b / (1 - p) with b ~ Bernoulli(1 - p), so its expectation is unchanged; at inference the
layer is the identity. b comes from ``tfvit.layers.keyed_random``: a function of (layer seed, optimizer
update, example), so exact gradient accumulation drops the same branches as the whole batch would.
"""

import keras
from keras import ops

from tfvit.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="tfvit")
class DropPath(Dropout):
    """``Dropout`` with one draw per sample instead of per element (``seed`` as there). Each residual
    branch needs its own DropPath, so that the two branches of a block drop independently."""

    def mask_shape(self, x):
        return (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
