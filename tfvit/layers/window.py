"""Window attention of the Swin Transformer and the window bookkeeping around it.

Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", eq. 4:
    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V
computed inside non-overlapping M x M windows, B gathered from a learned table of
(2M-1) x (2M-1) relative offsets. Shifted windows (section 3.2) roll the grid by M/2 and use a mask
so that tokens only attend to tokens from the same region of the un-rolled image.
"""

import keras
import numpy as np
from keras import ops

from tfvit import _validation as check
from tfvit.layers.attention import FusedSelfAttention, exact_attention, weighted_values
from tfvit.layers.dropout import Dropout
from tfvit.layers.table_lookup import take_rows

MASKED = -100.0  # the official implementation's additive mask value; exp(-100) underflows to 0 in float32


def window_partition(x, window_size):
    """(B, H, W, C) -> (B * H/wh * W/ww, wh * ww, C): windows in row-major order, tokens row-major."""
    wh, ww = check.as_pair("window_size", window_size)
    _, height, width, channels = x.shape
    if height % wh or width % ww:
        raise ValueError(f"grid {(height, width)} is not a multiple of the window {(wh, ww)}; pad it first.")
    x = ops.reshape(x, (-1, height // wh, wh, width // ww, ww, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, wh * ww, channels))


def window_reverse(windows, window_size, height, width):
    """Inverse of ``window_partition``: (B * nW, wh * ww, C) -> (B, H, W, C)."""
    wh, ww = check.as_pair("window_size", window_size)
    channels = windows.shape[-1]
    x = ops.reshape(windows, (-1, height // wh, width // ww, wh, ww, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


def relative_position_index(window_size):
    """(wh*ww, wh*ww) int array: row of the bias table for the offset from token j to token i.

    For tokens i = (hi, wi) and j = (hj, wj) of a window, the offset (hi - hj, wi - wj) lies in
    [-(wh-1), wh-1] x [-(ww-1), ww-1]; it is shifted to be non-negative and flattened row-major:
        index[i, j] = (hi - hj + wh - 1) * (2 ww - 1) + (wi - wj + ww - 1).
    """
    wh, ww = check.as_pair("window_size", window_size)
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    offset = coords[:, :, None] - coords[:, None, :]
    return ((offset[0] + wh - 1) * (2 * ww - 1) + (offset[1] + ww - 1)).astype(np.int32)


def shifted_window_mask(height, width, window_size, shift_size):
    """Additive attention mask (nW, wh*ww, wh*ww) for a grid rolled by ``-shift_size``.

    After the cyclic shift, a window at the bottom or right edge holds tokens from up to four regions
    of the original image that are not neighbours. Label the (padded) grid with the regions that the
    slices [0, -M), [-M, -s), [-s, end) define along each axis, partition the labels into windows and
    mask (with -100) every pair of tokens whose labels differ.
    """
    wh, ww = check.as_pair("window_size", window_size)
    sh, sw = check.as_pair("shift_size", shift_size) if shift_size else (0, 0)
    if height % wh or width % ww:
        raise ValueError(f"grid {(height, width)} is not a multiple of the window {(wh, ww)}; pad it first.")
    regions = np.zeros((height, width), np.int32)
    label = 0
    for rows in (slice(0, -wh), slice(-wh, -sh if sh else None), slice(-sh, None) if sh else slice(0, 0)):
        for cols in (slice(0, -ww), slice(-ww, -sw if sw else None), slice(-sw, None) if sw else slice(0, 0)):
            regions[rows, cols] = label
            label += 1
    windows = regions.reshape(height // wh, wh, width // ww, ww).transpose(0, 2, 1, 3).reshape(-1, wh * ww)
    return np.where(windows[:, :, None] == windows[:, None, :], 0.0, MASKED).astype(np.float32)


@keras.saving.register_keras_serializable(package="tfvit")
class WindowAttention(FusedSelfAttention):
    """Multi-head self-attention inside each window, with a learned relative position bias.

    Input: (B * nW, wh * ww, C) window tokens. ``call(x, attention_mask=mask)`` adds a (nW, N, N)
    mask (shifted windows) to the logits of every window of every image. ``return_attention_scores=True``
    also returns the (B * nW, heads, N, N) float32 weights, the very tensor the output is computed from
    (so a tape can differentiate with respect to it, as ``tfvit.vis.relevance`` does).
    Weights follow timm: ``qkv``, ``proj`` and ``relative_position_bias_table`` of shape
    ((2wh-1)(2ww-1), heads), initialised N(0, 0.02^2) truncated.
    """

    def __init__(self, num_heads, window_size, qkv_bias=True, attention_dropout=0.0, projection_dropout=0.0,
                 **kwargs):
        super().__init__(num_heads, qkv_bias=qkv_bias, projection_dropout=projection_dropout, **kwargs)
        self.window_size = check.as_pair("window_size", window_size)
        self.attention_dropout = check.rate("attention_dropout", attention_dropout)
        self.relative_position_index = relative_position_index(self.window_size).reshape(-1)
        self.attn_drop = Dropout(self.attention_dropout, dtype=self.dtype_policy, name="attn_drop")

    def build(self, input_shape):
        wh, ww = self.window_size
        if len(input_shape) != 3 or (input_shape[1] is not None and input_shape[1] != wh * ww):
            raise ValueError(
                f"{self.name} expects window tokens of shape (batch * windows, {wh * ww}, dim), "
                f"got {tuple(input_shape)}."
            )
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table", shape=((2 * wh - 1) * (2 * ww - 1), self.num_heads),
            # autocast=False: the bias is added to float32 logits, so it is read (and trained) in float32
            # under mixed precision too, as NeighborhoodAttention2D's table is.
            initializer=keras.initializers.TruncatedNormal(stddev=0.02), autocast=False,
        )
        super().build(input_shape)

    def relative_position_bias(self):
        """The (heads, N, N) bias B of eq. 4, gathered from the table."""
        n = self.window_size[0] * self.window_size[1]
        # take_rows: a dense gradient for the table (Keras's Adam mis-updates the IndexedSlices of a gather).
        bias = take_rows(self.relative_position_bias_table, self.relative_position_index)
        return ops.transpose(ops.reshape(bias, (n, n, self.num_heads)), (2, 0, 1))

    def call(self, x, attention_mask=None, return_attention_scores=False, training=None):
        n = x.shape[1]
        q, k, v = self.split_heads(x)  # each (B*nW, heads, N, head_dim)
        bias = ops.cast(self.relative_position_bias(), "float32")
        if attention_mask is not None:
            # Group the windows per image so the (nW, N, N) mask broadcasts over the batch:
            # (B, nW, heads, N, d) against the (nW, heads, N, N) bias + mask.
            num_windows = attention_mask.shape[0]
            grouped = lambda t: ops.reshape(t, (-1, num_windows, self.num_heads, n, self.head_dim))
            q, k, v = grouped(q), grouped(k), grouped(v)
            bias = bias[None] + ops.cast(attention_mask, "float32")[:, None]
        out, weights = exact_attention(q, k, v, bias=bias, return_weights=True)
        if return_attention_scores and attention_mask is not None:
            # The weights as (B*nW, heads, N, N), and the output recomputed from that reshaped tensor:
            # a gradient with respect to the returned weights must flow through the output.
            weights = ops.reshape(weights, (-1, self.num_heads, n, n))
            v = ops.reshape(v, (-1, self.num_heads, n, self.head_dim))
            out = weighted_values(weights, v)
        if training and self.attention_dropout > 0:
            out = weighted_values(self.attn_drop(weights, training=training), v)
        out = self.merge_heads(ops.reshape(out, (-1, self.num_heads, n, self.head_dim)), training)
        return (out, weights) if return_attention_scores else out

    def get_config(self):
        config = super().get_config()
        config.update(window_size=self.window_size, attention_dropout=self.attention_dropout)
        return config
