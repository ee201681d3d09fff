"""Local self-attention: 2D neighborhood attention (NATTEN) and 1D band attention.

Neighborhood attention (Hassani et al. 2023, "Neighborhood Attention Transformer", eq. 2-3): each
query attends to its k x k nearest neighbours on the token grid,
    NA(i) = softmax(q_i K_{rho(i)}^T / sqrt(d) + B(i, rho(i))) V_{rho(i)},
where the neighbourhood rho(i) is a k x k window that is *clamped inside the grid*: a query near a border
keeps a full k x k window, shifted inward, rather than a smaller one. Dilated neighborhood attention
(Hassani & Shi 2022, "Dilated Neighborhood Attention Transformer") spaces the neighbours d apart: each axis
is split into d interleaved subsequences (positions with the same residue mod d) and the window is taken
and clamped within the query's own subsequence.

Both are computed by gathering each query's neighbours with a static index tensor, so memory is
O(N k^2 d) and no N x N matrix is ever formed.
"""

import functools
import numbers

import keras
import numpy as np
from keras import ops

from tfvit import _validation as check
from tfvit.layers.attention import FusedSelfAttention
from tfvit.layers.table_lookup import take_rows


# ----------------------------------------------------------------------------------------------------------
# Index bookkeeping (numpy, at trace time: the grid is static, so the indices are constants of the graph).


def _odd_positive(name, value, why):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd positive integer ({why}), got {value!r}.")
    return int(value)


def _kernel_size(value):
    return _odd_positive("kernel_size", value, "the query sits at the centre of its neighbourhood")


def _window(value):
    return _odd_positive("window", value, "each token sees window // 2 tokens on either side")


def _check_grid_fits(grid, kernel_size, dilation):
    """NATTEN's constraint: the dilated kernel must fit along each axis, kernel_size * dilation <= extent."""
    height, width = grid
    if kernel_size * dilation > min(height, width):
        raise ValueError(
            f"kernel_size * dilation = {kernel_size} * {dilation} = {kernel_size * dilation} exceeds the "
            f"smaller side of grid {(height, width)}; expected kernel_size * dilation <= {min(height, width)}. "
            f"Use a smaller kernel_size or dilation, or a larger grid."
        )


def _axis_neighbours(length, kernel_size, dilation):
    """Neighbours of every position of one axis: (positions (L, k), offsets (L, k)), both int32.

    Position i has residue r = i mod d and index t = i // d in its subsequence r, r + d, r + 2d, ...,
    which holds m_r = ceil((L - r) / d) positions. Its window in the subsequence starts at
        s = clamp(t - k // 2, 0, m_r - k)
    and holds subsequence indices s .. s + k - 1, i.e. grid positions r + (s + a) d for a = 0 .. k-1.
    The offset of neighbour a from the query, in units of d, is s + a - t, in [-(k-1), k-1].
    """
    i = np.arange(length)
    residue, t = i % dilation, i // dilation
    count = (length - residue + dilation - 1) // dilation  # m_r, >= k by _check_grid_fits
    start = np.clip(t - kernel_size // 2, 0, count - kernel_size)
    slot = start[:, None] + np.arange(kernel_size)[None, :]
    positions = residue[:, None] + slot * dilation
    return positions.astype(np.int32), (slot - t[:, None]).astype(np.int32)


@functools.lru_cache(maxsize=64)
def _neighborhood_indices_cached(grid, kernel_size, dilation):
    (height, width), k = grid, kernel_size
    rows, row_offsets = _axis_neighbours(height, k, dilation)
    cols, col_offsets = _axis_neighbours(width, k, dilation)
    # Query (i, j), slot (a, b): key (rows[i, a], cols[j, b]), both flattened row-major.
    keys = rows[:, None, :, None] * width + cols[None, :, None, :]
    bias = (row_offsets[:, None, :, None] + k - 1) * (2 * k - 1) + (col_offsets[None, :, None, :] + k - 1)
    keys, bias = keys.reshape(height * width, k * k), bias.reshape(height * width, k * k)
    keys.flags.writeable = bias.flags.writeable = False  # shared through the cache
    return keys, bias


def neighborhood_indices(grid, kernel_size, dilation=1):
    """Static gather indices of 2D (dilated) neighborhood attention on a row-major (H, W) grid.

    Returns two (H*W, k*k) int32 arrays. ``keys[n, a*k + b]`` is the flat index of the neighbour in slot
    (a, b) of query n: row ``r(i) + (s_row(i) + a) d``, column ``r(j) + (s_col(j) + b) d`` (see
    ``neighborhood_attention_2d`` for s). ``bias[n, a*k + b]`` is the row of the flattened
    ((2k-1)^2) relative position table for that pair,
        (dr / d + k - 1) * (2k - 1) + (dc / d + k - 1),   (dr, dc) = key position - query position.
    """
    grid = check.as_pair("grid", grid)
    kernel_size = _kernel_size(kernel_size)
    dilation = check.positive_int("dilation", dilation)
    _check_grid_fits(grid, kernel_size, dilation)
    return _neighborhood_indices_cached(grid, kernel_size, dilation)


# ----------------------------------------------------------------------------------------------------------
# Functional attention on (batch, heads, tokens, head_dim).


def _check_qkv(q, k, v, where):
    if len(q.shape) != 4 or len(k.shape) != 4 or len(v.shape) != 4:
        raise ValueError(
            f"{where} expects q, k, v of rank 4 (batch, heads, tokens, head_dim), got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}."
        )
    if tuple(q.shape) != tuple(k.shape) or tuple(k.shape[:-1]) != tuple(v.shape[:-1]):
        raise ValueError(
            f"{where} expects q and k of equal shape and v with the same (batch, heads, tokens), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}."
        )


def _gathered_attention(q, k, v, keys, bias=None, valid=None):
    """softmax over the gathered keys: q (B, h, N, d), keys (N, K) int -> out (B, h, N, d), weights (B, h, N, K).

    Logits in the inputs' dtype (fast under mixed precision), softmax in float32 like ``exact_attention``.
    """
    scale = q.shape[-1] ** -0.5
    k_near = ops.take(k, keys, axis=2)  # (B, h, N, K, d): the O(N K d) part, no N x N anywhere
    v_near = ops.take(v, keys, axis=2)
    logits = ops.einsum("bhnd,bhnkd->bhnk", q * ops.cast(scale, q.dtype), k_near)
    logits = ops.cast(logits, "float32")
    if bias is not None:
        logits = logits + bias
    if valid is not None:
        # Padded slots (clipped duplicates of a real key) get exactly zero weight; every row keeps at
        # least the query itself, so no row is all -inf.
        logits = ops.where(valid, logits, float("-inf"))
    if logits.shape[-1] == 1:
        weights = ops.ones_like(logits)  # kernel_size 1 / window 1: each token attends to itself alone
    else:
        weights = ops.softmax(logits, axis=-1)
    out = ops.einsum("bhnk,bhnkd->bhnd", ops.cast(weights, v.dtype), v_near)
    return out, weights


def neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation=1, bias=None, return_weights=False):
    """2D (dilated) neighborhood attention, NATTEN's definition, without forming an N x N matrix.

    Hassani et al. 2023 (NAT) and Hassani & Shi 2022 (DiNAT). q, k, v: (batch, heads, N, head_dim) for
    the tokens of a row-major ``grid`` = (H, W), N = H * W. Query (i, j) attends to the k x k keys
        (r_i + (s_i + a) d,  r_j + (s_j + b) d),   a, b = 0 .. k-1,
    where along each axis of length L, for a query at position p: r = p mod d is its subsequence,
    t = p // d its index there, m = ceil((L - r) / d) the subsequence length, and
        s = clamp(t - k // 2, 0, m - k)
    the window start, clamped so the window stays inside the subsequence (for d = 1:
    clamp(p - k//2, 0, L - k); a border query gets a full window shifted inward). This is NATTEN's
    ``get_window_start``. out = softmax(q K^T / sqrt(head_dim) + bias) V over those k^2 keys, softmax in
    float32.

    Args:
        grid: (H, W) or an int for a square grid.
        kernel_size: odd k >= 1; ``kernel_size * dilation <= min(H, W)`` (NATTEN's constraint).
        dilation: d >= 1.
        bias: optional relative position bias table (heads, 2k-1, 2k-1) or (heads, (2k-1)^2), NATTEN's
            ``rpb``. A key at offset (dr, dc) from its query adds ``bias[h, dr/d + k-1, dc/d + k-1]``
            (offsets are multiples of d, so the division is exact).
        return_weights: also return the float32 weights (batch, heads, N, k*k), slot (a, b) at a*k + b.

    Returns the (batch, heads, N, head_dim) output in the dtype of v (and the weights if asked).
    Memory O(N k^2 head_dim).
    """
    grid = check.as_pair("grid", grid)
    kernel_size = _kernel_size(kernel_size)
    dilation = check.positive_int("dilation", dilation)
    _check_grid_fits(grid, kernel_size, dilation)
    _check_qkv(q, k, v, "neighborhood_attention_2d")
    tokens = q.shape[2]
    if tokens is not None and tokens != grid[0] * grid[1]:
        raise ValueError(
            f"neighborhood_attention_2d: grid {grid} holds {grid[0] * grid[1]} tokens, but q has {tokens} "
            f"(shape {tuple(q.shape)}); expected tokens = H * W in row-major order."
        )
    keys, bias_index = neighborhood_indices(grid, kernel_size, dilation)
    gathered_bias = None
    if bias is not None:
        heads, side = q.shape[1], 2 * kernel_size - 1
        shape = tuple(bias.shape)
        if shape not in ((heads, side, side), (heads, side * side)):
            raise ValueError(
                f"bias must have shape (heads, 2k-1, 2k-1) = {(heads, side, side)} or (heads, (2k-1)^2) = "
                f"{(heads, side * side)} for kernel_size={kernel_size}, got {shape}."
            )
        table = ops.transpose(ops.reshape(ops.cast(bias, "float32"), (heads, side * side)))  # ((2k-1)^2, heads)
        # (heads, N, k^2), broadcasts over the batch; take_rows keeps the table's gradient dense.
        gathered_bias = ops.transpose(take_rows(table, bias_index), (2, 0, 1))
    out, weights = _gathered_attention(q, k, v, keys, bias=gathered_bias)
    return (out, weights) if return_weights else out


def local_attention_1d(q, k, v, window, return_weights=False):
    """Band (sliding-window) attention on a sequence: token i attends to tokens j with |i - j| <= window // 2.

    Parmar et al. 2018 ("Image Transformer", 1D local attention) and Beltagy et al. 2020 (Longformer's
    sliding window). Unlike neighborhood attention the band is *not* clamped: tokens within window // 2 of
    an end see fewer neighbours. q, k, v: (batch, heads, N, head_dim);
        out_i = softmax_{|i-j| <= w//2}(q_i k_j / sqrt(head_dim)) v_j,   softmax in float32.
    The neighbours are gathered into min(window, 2N - 1) slots with a validity mask (slots past either end
    get weight 0), so memory is O(N window head_dim). N may be unknown until run time.
    ``return_weights`` also returns the float32 (batch, heads, N, slots) weights, slot o holding key
    i - half + o (0 where that key does not exist).
    """
    window = _window(window)
    _check_qkv(q, k, v, "local_attention_1d")
    half = window // 2
    if q.shape[2] is not None:
        half = min(half, q.shape[2] - 1)  # offsets beyond N - 1 are never valid: no slot for them
    tokens = ops.shape(q)[2]
    offsets = np.arange(-half, half + 1, dtype=np.int32)
    keys = ops.expand_dims(ops.arange(tokens, dtype="int32"), 1) + offsets[None, :]
    valid = ops.logical_and(keys >= 0, keys < tokens)
    keys = ops.clip(keys, 0, tokens - 1)
    out, weights = _gathered_attention(q, k, v, keys, valid=valid)
    return (out, weights) if return_weights else out


# ----------------------------------------------------------------------------------------------------------
# Layers: drop-in replacements for MultiHeadSelfAttention on (B, N, D) tokens.


@keras.saving.register_keras_serializable(package="tfvit")
class NeighborhoodAttention2D(FusedSelfAttention):
    """Multi-head 2D (dilated) neighborhood attention over the tokens of a row-major grid.

    Hassani et al. 2023 (NAT), Hassani & Shi 2022 (DiNAT); see ``neighborhood_attention_2d`` for the
    clamped, dilated window. Input (B, N, D) with N = H * W: a drop-in for MultiHeadSelfAttention in
    ``TransformerBlock`` at cost O(N k^2 D) instead of O(N^2 D). No class token: every token must be a grid
    cell.

    Args:
        num_heads: heads; must divide D.
        kernel_size: odd neighbourhood side k.
        dilation: spacing d of the neighbours; kernel_size * dilation <= min(H, W).
        grid_size: (H, W) or an int; None infers a square grid from N (N must be a perfect square).
        use_relative_position_bias: learn NATTEN's ``rpb`` table, shape (heads, 2k-1, 2k-1), initialised
            N(0, 0.02^2) truncated, added to the logit of a key at offset (dr, dc) at [h, dr/d + k-1, dc/d + k-1].
        qkv_bias: bias of the fused ``qkv`` projection.
        projection_dropout: dropout after ``proj``.
    """

    def __init__(self, num_heads, kernel_size, dilation=1, grid_size=None, use_relative_position_bias=True,
                 qkv_bias=True, projection_dropout=0.0, **kwargs):
        super().__init__(num_heads, qkv_bias=qkv_bias, projection_dropout=projection_dropout, **kwargs)
        self.kernel_size = _kernel_size(kernel_size)
        self.dilation = check.positive_int("dilation", dilation)
        self.grid_size = None if grid_size is None else check.as_pair("grid_size", grid_size)
        if self.grid_size is not None:
            _check_grid_fits(self.grid_size, self.kernel_size, self.dilation)
        self.use_relative_position_bias = bool(use_relative_position_bias)
        self.grid = self.grid_size  # the grid actually used, inferred at build when grid_size is None
        self.rpb = None

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expects tokens of shape (batch, tokens, dim), got {tuple(input_shape)}.")
        tokens = input_shape[1]  # the grid is checked before the projections are built
        if self.grid_size is None:
            side = int(round(tokens ** 0.5)) if tokens is not None else None
            if tokens is None or side * side != tokens:
                raise ValueError(
                    f"{self.name}: grid_size=None needs a square number of tokens to infer the grid, got "
                    f"{tokens} (input shape {tuple(input_shape)}); pass grid_size=(height, width)."
                )
            self.grid = (side, side)
        elif tokens is not None and tokens != self.grid_size[0] * self.grid_size[1]:
            raise ValueError(
                f"{self.name}: grid_size={self.grid_size} holds {self.grid_size[0] * self.grid_size[1]} tokens, "
                f"got {tokens} (input shape {tuple(input_shape)}); expected tokens = H * W."
            )
        _check_grid_fits(self.grid, self.kernel_size, self.dilation)
        super().build(input_shape)
        if self.use_relative_position_bias:
            side = 2 * self.kernel_size - 1
            # autocast=False: the table is added to float32 logits, so keep it float32 under mixed precision.
            self.rpb = self.add_weight(
                name="rpb", shape=(self.num_heads, side, side),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02), autocast=False,
            )
        self.built = True

    def call(self, x, training=None):
        q, k, v = self.split_heads(x)
        out = neighborhood_attention_2d(q, k, v, self.grid, self.kernel_size, self.dilation, bias=self.rpb)
        return self.merge_heads(out, training)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size, dilation=self.dilation, grid_size=self.grid_size,
            use_relative_position_bias=self.use_relative_position_bias,
        )
        return config


@keras.saving.register_keras_serializable(package="tfvit")
class LocalAttention1D(FusedSelfAttention):
    """Multi-head band attention on the token sequence: token i attends to |i - j| <= window // 2.

    See ``local_attention_1d`` (Parmar et al. 2018; Beltagy et al. 2020). Input (B, N, D), N may be
    unknown until run time; cost O(N window D). On image tokens in row-major order the band reaches
    window // 2 tokens along the row and wraps into the neighbouring rows, unlike NeighborhoodAttention2D.
    """

    def __init__(self, num_heads, window, qkv_bias=True, projection_dropout=0.0, **kwargs):
        super().__init__(num_heads, qkv_bias=qkv_bias, projection_dropout=projection_dropout, **kwargs)
        self.window = _window(window)

    def call(self, x, training=None):
        q, k, v = self.split_heads(x)
        return self.merge_heads(local_attention_1d(q, k, v, self.window), training)

    def get_config(self):
        config = super().get_config()
        config["window"] = self.window
        return config
