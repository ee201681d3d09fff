import numpy as np
import pytest

from tfvit.layers import WindowAttention, relative_position_index, shifted_window_mask, window_partition, window_reverse


def test_window_partition_layout_and_reverse_round_trip():
    x = np.random.default_rng(0).normal(size=(2, 6, 8, 3)).astype("float32")
    windows = window_partition(x, (3, 4)).numpy()
    assert windows.shape == (2 * 2 * 2, 12, 3)
    # Window (b, r, c) holds rows 3r..3r+2 and columns 4c..4c+3, row-major.
    for b in range(2):
        for r in range(2):
            for c in range(2):
                expected = x[b, 3 * r:3 * r + 3, 4 * c:4 * c + 4].reshape(12, 3)
                np.testing.assert_array_equal(windows[b * 4 + r * 2 + c], expected)
    np.testing.assert_array_equal(window_reverse(windows, (3, 4), 6, 8).numpy(), x)
    with pytest.raises(ValueError, match="not a multiple"):
        window_partition(x, 5)


@pytest.mark.parametrize("window", [(2, 2), (3, 5), (7, 7)])
def test_relative_position_index_follows_its_definition(window):
    wh, ww = window
    index = relative_position_index(window)
    positions = [(h, w) for h in range(wh) for w in range(ww)]
    for i, (hi, wi) in enumerate(positions):
        for j, (hj, wj) in enumerate(positions):
            assert index[i, j] == (hi - hj + wh - 1) * (2 * ww - 1) + (wi - wj + ww - 1)
    # every offset of the (2wh-1)(2ww-1) table occurs
    assert set(index.ravel()) == set(range((2 * wh - 1) * (2 * ww - 1)))


def test_shifted_window_mask_allows_exactly_the_tokens_that_were_neighbours():
    height, width, window, shift = 8, 12, 4, 2
    mask = shifted_window_mask(height, width, window, shift)
    assert mask.shape == (2 * 3, 16, 16)
    # After rolling by -shift, the token at rolled position (r, c) came from ((r+shift) % H, (c+shift) % W).
    # Two tokens of a window may attend iff their original positions are as close as their rolled ones.
    for w in range(6):
        r0, c0 = (w // 3) * window, (w % 3) * window
        cells = [(r0 + i // window, c0 + i % window) for i in range(16)]
        for a, (ra, ca) in enumerate(cells):
            for b, (rb, cb) in enumerate(cells):
                orig_a = ((ra + shift) % height, (ca + shift) % width)
                orig_b = ((rb + shift) % height, (cb + shift) % width)
                contiguous = (orig_a[0] - orig_b[0] == ra - rb) and (orig_a[1] - orig_b[1] == ca - cb)
                assert mask[w, a, b] == (0.0 if contiguous else -100.0)


def test_unshifted_mask_is_all_zero():
    assert not shifted_window_mask(8, 8, 4, 0).any()


def test_window_attention_shapes_and_bias_table():
    layer = WindowAttention(num_heads=2, window_size=3)
    out = layer(np.zeros((5, 9, 8), "float32"))
    assert out.shape == (5, 9, 8)
    assert layer.relative_position_bias_table.shape == (25, 2)
    with pytest.raises(ValueError, match="window tokens"):
        WindowAttention(2, 3)(np.zeros((5, 8, 8), "float32"))
