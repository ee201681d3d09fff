"""Swin's patch merging: halve the token grid, double the width.

Liu et al. 2021 section 3.1: concatenate each 2x2 group of neighbouring tokens (4C channels), apply
LayerNorm, then a linear map to 2C. A grid with an odd side is zero-padded first, as the official
implementation does. Concatenation order (row, col) offsets (0,0), (1,0), (0,1), (1,1), as in the
official code and timm, so pretrained ``reduction`` weights map unchanged.
"""

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers.layer_norm import LayerNorm


@keras.saving.register_keras_serializable(package="tfvit")
class PatchMerging(keras.layers.Layer):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim); sub-layers ``norm`` and ``reduction``."""

    def __init__(self, out_dim=None, norm_epsilon=1e-5, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.out_dim = out_dim
        self.norm_epsilon = float(norm_epsilon)
        self.norm = LayerNorm(epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm")
        self.reduction = None

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name} expects a token grid (batch, height, width, dim), got {tuple(input_shape)}.")
        dim = input_shape[-1]
        out_dim = self.out_dim or 2 * dim
        self.reduction = keras.layers.Dense(out_dim, use_bias=False, dtype=self.dtype_policy, name="reduction")
        self.norm.build((None, None, None, 4 * dim))
        self.reduction.build((None, None, None, 4 * dim))
        self.built = True

    def call(self, x):
        _, height, width, dim = x.shape
        if height % 2 or width % 2:
            x = ops.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
            height, width = height + height % 2, width + width % 2
        # (B, H/2, 2, W/2, 2, C) -> (B, H/2, W/2, col offset, row offset, C): the flattened last three
        # axes are the 2x2 group in the order (0,0), (1,0), (0,1), (1,1).
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, dim))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 4, 2, 5)), (-1, height // 2, width // 2, 4 * dim))
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        b, h, w, dim = input_shape
        half = lambda s: None if s is None else (s + 1) // 2
        return (b, half(h), half(w), self.out_dim or 2 * dim)

    def get_config(self):
        config = super().get_config()
        config.update(out_dim=self.out_dim, norm_epsilon=self.norm_epsilon)
        return config
