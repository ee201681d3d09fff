"""The Swin Transformer block and stage.

Liu et al. 2021, eq. 3 (one block; consecutive blocks alternate W-MSA and SW-MSA):
    x = x + DropPath((S)W-MSA(LN(x)))
    x = x + DropPath(MLP(LN(x)))
Any resolution works, as in the official implementation: a grid that is not a multiple of the
window is zero-padded (after LN, before the shift) and cropped back; a grid whose shorter side is at
most the window becomes one window (of that side) with no shift, since shifting a single window would
only roll tokens around.
"""

import keras
import numpy as np
from keras import ops

from tfvit import _validation as check
from tfvit.layers.blocks import PreNormBlock
from tfvit.layers.patch_merging import PatchMerging
from tfvit.layers.window import WindowAttention, shifted_window_mask, window_partition, window_reverse


def effective_window(resolution, window_size, shift_size):
    """The (window, shift) a block uses on a ``resolution`` grid (official Swin rule)."""
    if min(resolution) <= window_size:
        return min(resolution), 0
    return window_size, shift_size


@keras.saving.register_keras_serializable(package="tfvit")
class SwinBlock(PreNormBlock):
    """One Swin block on a (B, H, W, C) grid; ``shift_size`` > 0 makes it a shifted-window block.

    Sub-layers follow timm: ``norm1``, ``attn`` (WindowAttention), ``drop_path1``, ``norm2``, ``mlp``,
    ``drop_path2``.
    The window and shift actually used depend on the grid and are fixed at build:
    ``self.window`` and ``self.shift``. ``call(x, return_attention_scores=True)`` also returns the
    window attention weights, (B * nW, heads, n, n) float32 over the padded, shifted grid's windows.
    """

    def __init__(self, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0, qkv_bias=True, dropout=0.0,
                 attention_dropout=0.0, drop_path=0.0, norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check.positive_int("num_heads", num_heads)
        self.window_size = check.positive_int("window_size", window_size)
        if not 0 <= shift_size < self.window_size:
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}.")
        self.shift_size = int(shift_size)
        # attn (and mlp) at build: the window depends on the grid.
        self.init_branches(mlp_ratio, qkv_bias, dropout, attention_dropout, drop_path, norm_epsilon)

    def build(self, input_shape):
        if len(input_shape) != 4 or None in input_shape[1:]:
            raise ValueError(
                f"{self.name} expects a token grid (batch, height, width, dim) with static sizes, "
                f"got {tuple(input_shape)}."
            )
        _, height, width, dim = input_shape
        check.heads_divide("dim", dim, self.num_heads)
        self.window, self.shift = effective_window((height, width), self.window_size, self.shift_size)
        self.padded = (-(-height // self.window) * self.window, -(-width // self.window) * self.window)
        # A constant of the graph, computed once here rather than at every call.
        self.attention_mask = (
            shifted_window_mask(*self.padded, self.window, self.shift) if self.shift else None
        )
        self.attn = WindowAttention(
            self.num_heads, self.window, qkv_bias=self.qkv_bias, attention_dropout=self.attention_dropout,
            projection_dropout=self.dropout, dtype=self.dtype_policy, name="attn",
        )
        self.build_mlp(dim)
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)
        self.attn.build((None, self.window * self.window, dim))
        self.mlp.build(input_shape)
        self.built = True

    def call(self, x, return_attention_scores=False, training=None):
        _, height, width, dim = x.shape
        hp, wp = self.padded
        shortcut = x
        x = self.norm1(x)
        if (hp, wp) != (height, width):
            x = ops.pad(x, ((0, 0), (0, hp - height), (0, wp - width), (0, 0)))
        if self.shift:
            x = ops.roll(x, shift=(-self.shift, -self.shift), axis=(1, 2))
        windows = window_partition(x, self.window)
        windows = self.attn(windows, attention_mask=self.attention_mask,
                            return_attention_scores=return_attention_scores, training=training)
        if return_attention_scores:
            windows, weights = windows
        x = window_reverse(windows, self.window, hp, wp)
        if self.shift:
            x = ops.roll(x, shift=(self.shift, self.shift), axis=(1, 2))
        x = x[:, :height, :width, :]
        x = shortcut + self.drop_path1(x, training=training)
        x = self.mlp_residual(x, training=training)
        return (x, weights) if return_attention_scores else x

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, window_size=self.window_size, shift_size=self.shift_size)
        return config


@keras.saving.register_keras_serializable(package="tfvit")
class SwinStage(keras.layers.Layer):
    """One stage: optional PatchMerging (``downsample``) then ``depth`` blocks alternating shift 0, M/2.

    Layout of timm's current Swin (``layers.i.downsample``, ``layers.i.blocks.j``): the merging that
    feeds stage i belongs to stage i.
    """

    def __init__(self, depth, num_heads, out_dim, window_size=7, downsample=False, mlp_ratio=4.0, qkv_bias=True,
                 dropout=0.0, attention_dropout=0.0, drop_path=0.0, norm_epsilon=1e-5, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.depth = check.positive_int("depth", depth)
        self.num_heads = num_heads
        self.out_dim = check.positive_int("out_dim", out_dim)
        check.heads_divide("out_dim", self.out_dim, num_heads)
        self.window_size = check.positive_int("window_size", window_size)
        self.downsample_input = bool(downsample)
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        # One rate per block (the model spreads a linearly increasing schedule over all blocks).
        rates = list(drop_path) if isinstance(drop_path, (list, tuple, np.ndarray)) else [drop_path] * self.depth
        if len(rates) != self.depth:
            raise ValueError(f"drop_path needs one rate per block ({self.depth}), got {len(rates)}.")
        self.drop_path = [float(r) for r in rates]
        self.norm_epsilon = norm_epsilon
        policy = self.dtype_policy
        self.downsample = (
            PatchMerging(self.out_dim, norm_epsilon=norm_epsilon, dtype=policy, name="downsample")
            if self.downsample_input else None
        )
        self.blocks = [
            SwinBlock(
                num_heads, window_size, shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, dropout=dropout, attention_dropout=attention_dropout,
                drop_path=self.drop_path[i], norm_epsilon=norm_epsilon, dtype=policy, name=f"blocks.{i}",
            )
            for i in range(self.depth)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.downsample is not None:
            self.downsample.build(shape)
            shape = self.downsample.compute_output_shape(shape)
        elif shape[-1] != self.out_dim:
            raise ValueError(f"{self.name}: input width {shape[-1]} != out_dim {self.out_dim} and no downsample.")
        for block in self.blocks:
            block.build(shape)
        self.built = True

    def call(self, x, training=None):
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        if self.downsample is not None:
            return self.downsample.compute_output_shape(input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            depth=self.depth, num_heads=self.num_heads, out_dim=self.out_dim, window_size=self.window_size,
            downsample=self.downsample_input, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
            dropout=self.dropout, attention_dropout=self.attention_dropout, drop_path=self.drop_path,
            norm_epsilon=self.norm_epsilon,
        )
        return config
