"""Stochastic depth: drop a whole residual branch per sample.

Huang et al. 2016, "Deep Networks with Stochastic Depth". In training, each sample's branch output is
multiplied by b / (1 - p) with b ~ Bernoulli(1 - p), so its expectation is unchanged; at inference the
layer is the identity.
"""

import keras
from keras import ops

from tfvit import _validation as check


@keras.saving.register_keras_serializable(package="tfvit")
class DropPath(keras.layers.Layer):
    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check.rate("rate", rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        # Draw in float32: a bfloat16 uniform has only 8 bits and would bias the keep probability.
        draw = keras.random.uniform(shape, seed=self.seed_generator, dtype="float32")
        scale = ops.floor(keep + draw) / keep  # 1/keep with probability keep, else 0
        return x * ops.cast(scale, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
