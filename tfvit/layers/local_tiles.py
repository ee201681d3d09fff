"""Tiling plans of 2D neighborhood attention: which queries share a tile, which keys its halo holds.

Blocked neighborhood attention (the tiled CPU/GPU kernels of NATTEN, Hassani et al. 2023, sec. 4)
computes a t x t tile of queries at once against the smallest block of keys that holds all of their
windows, with dense matrix products and a mask, instead of gathering k^2 keys per query.

Along one axis of length L with dilation d the positions split into d subsequences (residues r mod d) of
m_r = ceil((L - r) / d) members; a query at subsequence index u has the clamped window
    s(u) .. s(u) + k - 1,   s(u) = clamp(u - k // 2, 0, m_r - k).
s is non-decreasing and s(u + 1) - s(u) <= 1, so the windows of a run of t consecutive queries
u0 .. u0 + t - 1 lie inside s(u0) .. s(u0) + t + k - 2: a halo of T = t + k - 1 keys. Every halo has the
same length T (capped at the longest subsequence), starting at s(u0); tiles never cross subsequences, a
last short tile repeats its last query, and halo slots past the subsequence's end repeat its last key.
Both repetitions are masked out or dropped, so the result is exact, and their gradients are exactly zero,
as are those of halo keys no query of the tile attends to: ``query_live`` and ``key_live`` mark the
slots that carry gradient, so that the gathers' gradients (``static_gather``) read each key once per
tile that attends to it (about ceil(T / t) tiles per axis; more near the ends, where clamped windows
pile up).

A 2D tile is a pair of axis tiles: its queries and halo are products of the axes' ones, and its mask and
relative offsets are the outer combinations of the axes' (windows are products of axis windows).
All of this is numpy at trace time: the grid is static.
"""

import functools
from typing import NamedTuple

import numpy as np


class AxisTiles(NamedTuple):
    """The tiles of one axis; n tiles of ``size`` queries, each with a halo of ``halo`` keys."""

    queries: np.ndarray   # (n, size) positions on the axis of each tile's query slots
    keys: np.ndarray      # (n, halo) positions of each tile's halo slots
    allowed: np.ndarray   # (n, size, halo) bool: halo slot j is in the window of query slot i
    offsets: np.ndarray   # (n, size, halo) (key - query) / d + k - 1, in [0, 2k - 2] where allowed
    home: np.ndarray      # (L,) tile * size + slot where each position is computed (its first slot)

    @property
    def size(self):
        return self.queries.shape[1]

    @property
    def halo(self):
        return self.keys.shape[1]


def axis_tiles(length, kernel_size, dilation, tile):
    """Tiles of ``tile`` queries along one axis (fewer if the longest subsequence is shorter)."""
    k = kernel_size
    longest = -(-length // dilation)
    size = min(tile, longest)
    halo = min(size + k - 1, longest)
    queries, keys, allowed, offsets = [], [], [], []
    home = np.empty(length, np.int64)
    for residue in range(dilation):
        members = (length - residue + dilation - 1) // dilation
        start = np.clip(np.arange(members) - k // 2, 0, members - k)
        for first in range(0, members, size):
            query_slots = np.minimum(first + np.arange(size), members - 1)
            halo_start = start[first]
            key_slots = halo_start + np.arange(halo)
            real_keys = key_slots < members
            key_slots = np.minimum(key_slots, members - 1)
            window = start[query_slots][:, None]
            allowed.append(real_keys[None, :] & (key_slots[None, :] >= window) & (key_slots[None, :] < window + k))
            offsets.append(np.clip(key_slots[None, :] - query_slots[:, None] + k - 1, 0, 2 * k - 2))
            real = np.arange(first, min(first + size, members))
            home[residue + real * dilation] = len(queries) * size + (real - first)
            queries.append(residue + query_slots * dilation)
            keys.append(residue + key_slots * dilation)
    return AxisTiles(np.stack(queries), np.stack(keys), np.stack(allowed), np.stack(offsets), home)


class GridTiles(NamedTuple):
    """The tiles of a (H, W) grid, flattened row-major; every array is read-only (shared by a cache)."""

    queries: np.ndarray   # (tiles * tile_queries,) flat grid index of each query slot
    keys: np.ndarray      # (tiles * halo_keys,) flat grid index of each halo slot
    allowed: np.ndarray   # (tiles, tile_queries, halo_keys) bool
    bias_index: np.ndarray  # (tiles, tile_queries, halo_keys) row of the ((2k-1)^2) relative position table
    home: np.ndarray      # (H * W,) flat query slot where each token is computed
    window_slots: np.ndarray  # (H * W, k * k) flat (slot, halo key) of each token's neighbour a*k + b
    query_live: np.ndarray  # (tiles * tile_queries,) bool: the slot is its token's home (else dropped)
    key_live: np.ndarray    # (tiles * halo_keys,) bool: some query of the tile attends to the slot

    @property
    def shape(self):
        return self.allowed.shape


@functools.lru_cache(maxsize=64)
def grid_tiles(grid, kernel_size, dilation, tile):
    """The 2D tiling of neighborhood attention on ``grid`` with ``tile`` x ``tile`` query tiles."""
    (height, width), k = grid, kernel_size
    rows, cols = axis_tiles(height, k, dilation, tile), axis_tiles(width, k, dilation, tile)

    def outer(row_part, col_part):  # (nr, a, b), (nc, c, e) -> (nr * nc, a * c, b * e)
        combined = row_part[:, None, :, None, :, None] * col_part[None, :, None, :, None, :]
        n = row_part.shape[0] * col_part.shape[0]
        return combined.reshape(n, row_part.shape[1] * col_part.shape[1], row_part.shape[2] * col_part.shape[2])

    queries = (rows.queries[:, None, :, None] * width + cols.queries[None, :, None, :]).reshape(-1)
    keys = (rows.keys[:, None, :, None] * width + cols.keys[None, :, None, :]).reshape(-1)
    allowed = outer(rows.allowed, cols.allowed)
    side = 2 * k - 1
    # Sum of an outer product via (a * side) * 1 + 1 * b: build both parts with ones on the other axis.
    bias_index = (outer(rows.offsets * side, np.ones_like(cols.offsets))
                  + outer(np.ones_like(rows.offsets), cols.offsets))
    row_tile, row_slot = np.divmod(rows.home, rows.size)
    col_tile, col_slot = np.divmod(cols.home, cols.size)
    tile_of = row_tile[:, None] * len(cols.queries) + col_tile[None, :]
    slot_of = row_slot[:, None] * cols.size + col_slot[None, :]
    home = (tile_of * rows.size * cols.size + slot_of).reshape(-1)
    window_slots = _window_slots(rows, cols, k, home)
    query_live = np.zeros(len(queries), bool)
    query_live[home] = True
    key_live = allowed.any(axis=1).reshape(-1)
    arrays = [queries, keys, allowed, bias_index, home, window_slots, query_live, key_live]
    arrays = [a.astype(bool if a.dtype == bool else np.int32) for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    return GridTiles(*arrays)


def _window_slots(rows, cols, k, home):
    """Where each token's k x k window lies in the flattened (tile query slot, halo key) scores, in
    NATTEN's slot order a * k + b: the j-th allowed halo key of its row slot along each axis."""
    def axis_slots(axis):
        tile, slot = np.divmod(axis.home, axis.size)
        allowed = axis.allowed[tile, slot]  # (L, halo): exactly k True per position, in window order
        return np.nonzero(allowed)[1].reshape(-1, k)

    row_keys, col_keys = axis_slots(rows), axis_slots(cols)
    halo = rows.halo * cols.halo
    key = (row_keys[:, None, :, None] * cols.halo + col_keys[None, :, None, :]).reshape(len(home), k * k)
    return home[:, None] * halo + key


TILE = 8
WHOLE_GRID_BELOW = 1.5


def default_tile(grid, kernel_size):
    """The query tile side: ``TILE`` = 8, or the whole grid (one tile, no gathers: masked dense attention)
    where tiles of 8 would save less than ``WHOLE_GRID_BELOW`` = 1.5x of its products, i.e. where
    H W / (T_H T_W) < 1.5 for the halo T = min(L, 8 + k - 1) along each axis of length L.

    Chosen with ``python -m tools.local_tile_bench`` (its table: docs/performance.md, "Choosing the tile"): of the fixed sizes
    measured on grids of 8 to 64 with k = 3, 5, 7, 8 has the smallest worst ratio to each row's fastest
    size, and the whole grid was fastest only where the halo nearly covers it. Smaller tiles waste fewer
    masked scores but multiply small matrix products and gathers; larger ones the reverse."""
    height, width = grid
    halo = min(height, TILE + kernel_size - 1) * min(width, TILE + kernel_size - 1)
    if height * width < WHOLE_GRID_BELOW * halo:
        return max(height, width)
    return TILE
