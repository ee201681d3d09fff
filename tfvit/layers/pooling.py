"""Reduce a token sequence or grid to one vector per image for the classifier head.

"token": the class token's final state (ViT, Dosovitskiy et al. 2021 eq. 4);
"mean": the mean over the patch tokens (prefix tokens excluded), as Swin and many ViT variants do.
"""

import keras
from keras import ops

from tfvit import _validation as check

POOLING_MODES = ("token", "mean")


@keras.saving.register_keras_serializable(package="tfvit")
class TokenPooling(keras.layers.Layer):
    """(B, N, D) or (B, H, W, D) -> (B, D)."""

    def __init__(self, mode="token", num_prefix_tokens=1, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {mode!r}.")
        if mode == "token" and num_prefix_tokens < 1:
            raise ValueError("pooling='token' needs a class token (num_prefix_tokens >= 1).")
        self.mode = mode
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, x):
        if self.mode == "token":
            return x[:, 0]
        if len(x.shape) == 4:
            return ops.mean(x, axis=(1, 2))
        return ops.mean(x[:, self.num_prefix_tokens:], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, num_prefix_tokens=self.num_prefix_tokens)
        return config
