"""Resize Swin's relative-position bias tables to another window.

A window of M x M tokens has (2M-1) x (2M-1) relative offsets, and the table holds one bias per offset
and head. Fine-tuning at another window (Liu et al. 2021, section 4.1, 224 -> 384 with window 7 -> 12), or
a stage whose grid is smaller than the window, needs the table on another offset grid: it is resampled
as a (2M-1) x (2M-1) image per head by bicubic interpolation, as the official Swin code loads pretrained
tables (``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``: Keys' cubic kernel
with a = -0.75, half-pixel centres, edge samples repeated), reproduced here in numpy.
"""

import numpy as np

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient


def _cubic(distance, a=CUBIC_A):
    """Keys' cubic convolution kernel at |distance| (Keys 1981, eq. 15)."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(source, target):
    """(target, source) matrix resampling a 1-D signal of ``source`` samples to ``target`` samples."""
    centres = (np.arange(target) + 0.5) * (source / target) - 0.5
    first = np.floor(centres).astype(int) - 1
    matrix = np.zeros((target, source))
    for offset in range(4):
        index = first + offset
        weight = _cubic(centres - index)
        np.add.at(matrix, (np.arange(target), np.clip(index, 0, source - 1)), weight)
    return matrix


def resize_relative_position_bias_table(table, target_window):
    """((2M-1)^2, heads) table -> ((2W-1)^2, heads) for a W x W window (square windows)."""
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"a relative position bias table has shape ((2M-1)^2, heads), got {table.shape}.")
    side = round(table.shape[0] ** 0.5)
    if side * side != table.shape[0] or side % 2 == 0:
        raise ValueError(f"table of {table.shape[0]} rows is not a (2M-1) x (2M-1) offset grid of a square window.")
    target_side = 2 * int(target_window) - 1
    if target_side == side:
        return table
    grid = table.reshape(side, side, -1).astype(np.float64)
    rows = bicubic_matrix(side, target_side)
    resized = np.einsum("ij,jkh,lk->ilh", rows, grid, rows)
    return resized.reshape(target_side * target_side, -1).astype(table.dtype)
