"""Local self-attention: 2D neighborhood attention (NATTEN) and 1D band attention.

Neighborhood attention (Hassani et al. 2023, "Neighborhood Attention Transformer", eq. 2-3): each
query attends to its k x k nearest neighbours on the token grid,
    NA(i) = softmax(q_i K_{rho(i)}^T / sqrt(d) + B(i, rho(i))) V_{rho(i)},
where the neighbourhood rho(i) is a k x k window that is *clamped inside the grid*: a query near a border
keeps a full k x k window, shifted inward, rather than a smaller one. Dilated neighborhood attention
(Hassani & Shi 2022, "Dilated Neighborhood Attention Transformer") spaces the neighbours d apart: each axis
is split into d interleaved subsequences (positions with the same residue mod d) and the window is taken
and clamped within the query's own subsequence.

Both are computed in tiles (blocks) of queries, each against the smallest block of keys that holds all of
their windows, with dense matrix products and a mask: the work is O(N T^2 d) for a halo of T = t + k - 1
keys per axis, the scores O(N T^2) per head, and no N x N matrix, nor a copy of K and V per query, is ever
formed (``tfvit.layers.local_tiles`` plans the 2D tiles, ``python -m tools.local_tile_bench`` measures
the tile sizes, ``python -m tools.attention_bench`` the layers against global attention).
"""

import numbers

import keras
import numpy as np
from keras import ops

from tfvit import _validation as check
from tfvit.layers.attention import FusedSelfAttention
from tfvit.layers.local_tiles import default_tile, grid_tiles
from tfvit.layers.static_gather import take_static
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


def neighborhood_indices(grid, kernel_size, dilation=1):
    """Static gather indices of 2D (dilated) neighborhood attention on a row-major (H, W) grid.

    Returns two (H*W, k*k) int32 arrays. ``keys[n, a*k + b]`` is the flat index of the neighbour in slot
    (a, b) of query n: row ``r(i) + (s_row(i) + a) d``, column ``r(j) + (s_col(j) + b) d`` (see
    ``neighborhood_attention_2d`` for s). ``bias[n, a*k + b]`` is the row of the flattened
    ((2k-1)^2) relative position table for that pair,
        (dr / d + k - 1) * (2k - 1) + (dc / d + k - 1),   (dr, dc) = key position - query position.

    Read from the tile plan that ``neighborhood_attention_2d`` computes with (its ``window_slots`` into
    the halos), so these are the windows and bias rows the attention really uses.
    """
    grid = check.as_pair("grid", grid)
    kernel_size = _kernel_size(kernel_size)
    dilation = check.positive_int("dilation", dilation)
    _check_grid_fits(grid, kernel_size, dilation)
    plan = grid_tiles(grid, kernel_size, dilation, default_tile(grid, kernel_size))
    tiles, tile_queries, halo_keys = plan.shape
    tile, key = plan.window_slots // (tile_queries * halo_keys), plan.window_slots % halo_keys
    keys = plan.keys.reshape(tiles, halo_keys)[tile, key]
    bias = plan.bias_index.reshape(-1)[plan.window_slots]
    return keys.astype(np.int32), bias.astype(np.int32)


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


def _masked_softmax(logits, additive):
    """softmax in float32 of logits (any dtype) plus an additive float32 term (0, a bias, or -inf)."""
    logits = ops.cast(logits, "float32") + additive
    if logits.shape[-1] == 1:
        return ops.ones_like(logits)  # kernel_size 1 / window 1: each token attends to itself alone
    return ops.softmax(logits, axis=-1)


def neighborhood_attention_2d(q, k, v, grid, kernel_size, dilation=1, bias=None, return_weights=False,
                              tile=None):
    """2D (dilated) neighborhood attention, NATTEN's definition, blocked into query tiles.

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

    Computed in tiles (``tfvit.layers.local_tiles``): each tile of tile x tile queries (within one
    subsequence) takes one (tile^2 x T^2) product with its halo of T = tile + k - 1 keys per axis, masked to
    each query's window, so the work is O(N T^2 head_dim) in a few large matrix products, the scores are
    O(N T^2) per head and K, V are copied once per halo, O(N (T / tile)^2 head_dim), instead of k^2 times.

    Args:
        grid: (H, W) or an int for a square grid.
        kernel_size: odd k >= 1; ``kernel_size * dilation <= min(H, W)`` (NATTEN's constraint).
        dilation: d >= 1.
        bias: optional relative position bias table (heads, 2k-1, 2k-1) or (heads, (2k-1)^2), NATTEN's
            ``rpb``. A key at offset (dr, dc) from its query adds ``bias[h, dr/d + k-1, dc/d + k-1]``
            (offsets are multiples of d, so the division is exact).
        return_weights: also return the float32 weights (batch, heads, N, k*k), slot (a, b) at a*k + b.
        tile: the query tile side; None takes ``local_tiles.default_tile``. Any tile gives the same result.

    Returns the (batch, heads, N, head_dim) output in the dtype of v (and the weights if asked).
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
    tile = default_tile(grid, kernel_size) if tile is None else check.positive_int("tile", tile)
    plan = grid_tiles(grid, kernel_size, dilation, tile)
    tiles, tile_queries, halo_keys = plan.shape
    heads, head_dim = q.shape[1], q.shape[3]
    additive = ops.where(plan.allowed, 0.0, float("-inf"))  # (tiles, tile_queries, halo_keys), a constant
    if bias is not None:
        side = 2 * kernel_size - 1
        shape = tuple(bias.shape)
        if shape not in ((heads, side, side), (heads, side * side)):
            raise ValueError(
                f"bias must have shape (heads, 2k-1, 2k-1) = {(heads, side, side)} or (heads, (2k-1)^2) = "
                f"{(heads, side * side)} for kernel_size={kernel_size}, got {shape}."
            )
        table = ops.transpose(ops.reshape(ops.cast(bias, "float32"), (heads, side * side)))  # ((2k-1)^2, heads)
        # (heads, tiles, tile_queries, halo_keys), broadcast over the batch; take_rows keeps the table's
        # gradient dense.
        additive = ops.transpose(take_rows(table, plan.bias_index), (3, 0, 1, 2)) + additive
    batch = ops.shape(q)[0]
    scale = ops.cast(head_dim ** -0.5, q.dtype)
    # Dropped query slots and masked key slots get exactly zero gradient: take_static skips them.
    q_tiles = take_static(q * scale, plan.queries, axis=2, live=plan.query_live)
    q_tiles = ops.reshape(q_tiles, (batch, heads, tiles, tile_queries, head_dim))
    k_halo = ops.reshape(take_static(k, plan.keys, axis=2, live=plan.key_live),
                         (batch, heads, tiles, halo_keys, head_dim))
    v_halo = ops.reshape(take_static(v, plan.keys, axis=2, live=plan.key_live),
                         (batch, heads, tiles, halo_keys, head_dim))
    logits = ops.einsum("bhtqd,bhtkd->bhtqk", q_tiles, k_halo)
    weights = _masked_softmax(logits, additive)
    out = ops.einsum("bhtqk,bhtkd->bhtqd", ops.cast(weights, v.dtype), v_halo)
    out = take_static(ops.reshape(out, (batch, heads, tiles * tile_queries, head_dim)), plan.home, axis=2)
    if not return_weights:
        return out
    flat = ops.reshape(weights, (batch, heads, tiles * tile_queries * halo_keys))
    return out, ops.take(flat, plan.window_slots, axis=2)


def _band_block(window):
    """The query block of band attention: window // 2 queries (each block then needs its own keys and a
    block on either side, 3 * (window // 2) keys, as few as the band needs, window - 1 + block)."""
    return max(window // 2, 1)


def local_attention_1d(q, k, v, window, return_weights=False, block=None):
    """Band (sliding-window) attention on a sequence: token i attends to tokens j with |i - j| <= window // 2.

    Parmar et al. 2018 ("Image Transformer", 1D local attention) and Beltagy et al. 2020 (Longformer's
    sliding window). Unlike neighborhood attention the band is *not* clamped: tokens within window // 2 of
    an end see fewer neighbours. q, k, v: (batch, heads, N, head_dim);
        out_i = softmax_{|i-j| <= w//2}(q_i k_j / sqrt(head_dim)) v_j,   softmax in float32.

    Blocked: the sequence is cut into blocks of ``block`` queries (padded at the end); block b attends to
    its own keys and c = ceil((w // 2) / block) blocks on either side, (2c + 1) block keys, in one dense
    product masked to the band (keys before 0 or past N - 1 get weight 0). The shifted key blocks are
    slices of one padded copy, so N may be unknown until run time. Work and memory are O(N w head_dim).
    ``return_weights`` also returns the float32 (batch, heads, N, slots) weights, slot o holding key
    i - half + o (0 where that key does not exist), slots = min(window, 2N - 1).
    """
    window = _window(window)
    _check_qkv(q, k, v, "local_attention_1d")
    half = window // 2
    if q.shape[2] is not None:
        half = min(half, q.shape[2] - 1)  # offsets beyond N - 1 are never valid: no slot for them
    block = _band_block(2 * half + 1) if block is None else check.positive_int("block", block)
    reach = -(-half // block)  # c: key blocks on either side
    batch, heads, head_dim = ops.shape(q)[0], q.shape[1], q.shape[3]
    tokens = ops.shape(q)[2]
    blocks = (tokens + block - 1) // block
    padded = blocks * block

    def pad(x, before, after):
        return ops.pad(x, [[0, 0], [0, 0], [before, after], [0, 0]])

    scale = ops.cast(head_dim ** -0.5, q.dtype)
    q_blocks = ops.reshape(pad(q * scale, 0, padded - tokens), (batch, heads, blocks, block, head_dim))

    def halo(x):  # (B, h, blocks, (2c + 1) block, d): block b's keys b - c .. b + c
        x = ops.reshape(pad(x, reach * block, padded - tokens + reach * block),
                        (batch, heads, blocks + 2 * reach, block, head_dim))
        # ops.slice, not x[:, :, a:b]: TensorFlow's gradient of a slice is one Pad, of a strided slice a
        # generic scatter that dominated the backward pass.
        return ops.concatenate([ops.slice(x, (0, 0, shift, 0, 0), (batch, heads, blocks, block, head_dim))
                                for shift in range(2 * reach + 1)], axis=3)

    k_halo, v_halo = halo(k), halo(v)
    # Query i = b * block + a, key j = (b - c) * block + m: in the band iff |a - m + c * block| <= half.
    a = np.arange(block)[:, None]
    m = np.arange((2 * reach + 1) * block)[None, :]
    in_band = np.abs(a - m + reach * block) <= half  # (block, keys), the same for every block
    first = ops.arange(blocks, dtype="int32")[:, None, None] * block
    key = first + (m - reach * block)[None]
    query = first + a[None]
    # Padded queries (past N - 1) may see every slot: their rows are dropped, but must not be all -inf.
    allowed = ops.logical_or(ops.logical_and(in_band[None], ops.logical_and(key >= 0, key < tokens)),
                             query >= tokens)
    additive = ops.where(allowed, 0.0, float("-inf"))  # (blocks, block, keys)
    logits = ops.einsum("bhnqd,bhnkd->bhnqk", q_blocks, k_halo)
    weights = _masked_softmax(logits, additive)
    out = ops.einsum("bhnqk,bhnkd->bhnqd", ops.cast(weights, v.dtype), v_halo)
    out = ops.slice(ops.reshape(out, (batch, heads, padded, head_dim)), (0, 0, 0, 0), (batch, heads, tokens, head_dim))
    if not return_weights:
        return out
    # Slot o of query a is key slot a + c * block - half + o of its block.
    slots = np.arange(block)[:, None] + reach * block - half + np.arange(2 * half + 1)[None, :]
    banded = ops.take_along_axis(weights, np.broadcast_to(slots, (1, 1, 1) + slots.shape), axis=-1)
    banded = ops.reshape(banded, (batch, heads, padded, 2 * half + 1))
    return out, ops.slice(banded, (0, 0, 0, 0), (batch, heads, tokens, 2 * half + 1))


# ----------------------------------------------------------------------------------------------------------
# Layers: drop-in replacements for MultiHeadSelfAttention on (B, N, D) tokens.


@keras.saving.register_keras_serializable(package="tfvit")
class NeighborhoodAttention2D(FusedSelfAttention):
    """Multi-head 2D (dilated) neighborhood attention over the tokens of a row-major grid.

    Hassani et al. 2023 (NAT), Hassani & Shi 2022 (DiNAT); see ``neighborhood_attention_2d`` for the
    clamped, dilated window. Input (B, N, D) with N = H * W: a drop-in for MultiHeadSelfAttention in
    ``TransformerBlock`` at cost O(N (t + k - 1)^2 D) for query tiles of t x t (``default_tile``), instead
    of O(N^2 D). No class token: every token must be a grid cell.

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
    unknown until run time; cost O(N window D) (blocks of window // 2 queries, each against three such
    blocks of keys). On image tokens in row-major order the band reaches window // 2 tokens along the row
    and wraps into the neighbouring rows, unlike NeighborhoodAttention2D.
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
