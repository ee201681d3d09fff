"""Stochastic depth: drop a whole residual branch per sample.

Huang et al. 2016, "Deep Networks with Stochastic Depth". In training, each sample's branch output is
multiplied by b / (1 - p) with b ~ Bernoulli(1 - p), so its expectation is unchanged; at inference the
layer is the identity. b comes from ``tfvit.layers.keyed_random``: a function of (layer seed, optimizer
update, example), so exact gradient accumulation drops the same branches as the whole batch would.
"""

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers import keyed_random


@keras.saving.register_keras_serializable(package="tfvit")
class DropPath(keras.layers.Layer):
    """``seed``: the layer's seed s (None draws one from numpy's global generator, kept in the config).
    Each residual branch needs its own DropPath, so that the two branches of a block drop independently."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check.rate("rate", rate)
        self.seed = keyed_random.new_layer_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed) if self.rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        return x * keyed_random.keep_mask(shape, self.rate, self.seed, self.seed_generator, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
