"""Dropout whose masks depend on the example, not on how its batch was split.

Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from Overfitting", in the
inverted form: in training each element is multiplied by b / (1 - p), b ~ Bernoulli(1 - p), so its
expectation is unchanged; at inference the layer is the identity. The draws are
``tfvit.layers.keyed_random``'s, so an example gets the same mask in the whole batch and in any
micro-batch of exact gradient accumulation.
"""

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers import keyed_random


@keras.saving.register_keras_serializable(package="tfvit")
class Dropout(keras.layers.Layer):
    """Element-wise dropout with rate ``rate``, a drop-in for ``keras.layers.Dropout`` (no noise_shape).

    ``seed``: the layer's seed s, kept in the config (None: ``keyed_random.new_layer_seed`` draws one,
    from the model's seed stream inside a tfvit model). Inputs are example-major along their first
    axis (see ``keyed_random.random_bits``).
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.rate = check.rate("rate", rate)
        self.seed = keyed_random.new_layer_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed) if self.rate > 0 else None

    def mask_shape(self, x):
        """The shape of the mask: one draw per element (DropPath: one per sample)."""
        return (ops.shape(x)[0], *x.shape[1:])

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        return x * keyed_random.keep_mask(self.mask_shape(x), self.rate, self.seed, self.seed_generator, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
