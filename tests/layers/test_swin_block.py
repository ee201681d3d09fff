import numpy as np
import pytest

from tfvit.layers import SwinBlock, SwinStage
from tests import reference


@pytest.mark.parametrize(
    "grid, window, shift",
    [
        ((8, 8), 4, 2),   # multiple of the window, shifted
        ((8, 8), 4, 0),   # plain windows
        ((7, 6), 4, 2),   # padded to 8x8 before the shift, as the official implementation does
        ((14, 14), 4, 2),  # the 28x28 MNIST configuration's first stage
    ],
)
def test_swin_block_equals_full_attention_over_padded_rolled_grid(grid, window, shift):
    rng = np.random.default_rng(sum(grid) + shift)
    x = rng.normal(size=(2, *grid, 8)).astype("float32")
    block = SwinBlock(num_heads=2, window_size=window, shift_size=shift, mlp_ratio=2.0)
    out = block(x).numpy()
    assert (block.window, block.shift) == (window, shift)
    # Randomise the bias table so a wrong index or a dropped bias cannot hide behind small values.
    table = block.attn.relative_position_bias_table
    table.assign(rng.normal(size=table.shape).astype("float32"))
    out = block(x).numpy()
    w = reference.weights_of(block)
    for b in range(2):
        expected = reference.swin_block(x[b].astype(np.float64), w, "", 2, window, shift)
        np.testing.assert_allclose(out[b], expected, atol=2e-4)


@pytest.mark.parametrize("grid, expected_window", [((4, 4), 4), ((2, 2), 2), ((3, 5), 3)])
def test_stage_no_larger_than_window_uses_one_unshifted_window(grid, expected_window):
    x = np.random.default_rng(3).normal(size=(1, *grid, 8)).astype("float32")
    block = SwinBlock(num_heads=2, window_size=7, shift_size=3)
    out = block(x).numpy()
    # Official rule: if min(H, W) <= window_size, window = min(H, W) and shift = 0.
    assert (block.window, block.shift) == (expected_window, 0)
    assert block.attn.relative_position_bias_table.shape[0] == (2 * expected_window - 1) ** 2
    expected = reference.swin_block(x[0].astype(np.float64), reference.weights_of(block), "", 2, expected_window, 0)
    np.testing.assert_allclose(out[0], expected, atol=2e-4)


def test_swin_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shift_size"):
        SwinBlock(2, window_size=4, shift_size=4)
    with pytest.raises(ValueError, match="num_heads=3 does not divide dim=8"):
        SwinBlock(3, window_size=4)(np.zeros((1, 8, 8, 8), "float32"))
    with pytest.raises(ValueError, match="token grid"):
        SwinBlock(2, window_size=4)(np.zeros((1, 64, 8), "float32"))


def test_swin_stage_merges_then_alternates_shifts():
    stage = SwinStage(depth=3, num_heads=2, out_dim=16, window_size=2, downsample=True)
    out = stage(np.zeros((2, 8, 8, 8), "float32"))
    assert out.shape == (2, 4, 4, 16)
    assert [b.shift for b in stage.blocks] == [0, 1, 0]
    assert [b.name for b in stage.blocks] == ["blocks.0", "blocks.1", "blocks.2"]
    with pytest.raises(ValueError, match="one rate per block"):
        SwinStage(depth=2, num_heads=2, out_dim=8, drop_path=[0.1])
