import numpy as np
import pytest

from tfvit.convert import resize_relative_position_bias_table
from tfvit.convert.resample import bicubic_matrix


def test_matches_torch_bicubic_as_the_official_swin_loader():
    torch = pytest.importorskip("torch")
    heads = 3
    for source, target in [(4, 7), (7, 4), (7, 12), (4, 3), (4, 2), (2, 4)]:
        _compare_with_torch(torch, source, target, heads)


def _compare_with_torch(torch, source, target, heads):
    table = np.random.default_rng(source * 10 + target).normal(size=((2 * source - 1) ** 2, heads)).astype(np.float32)
    out = resize_relative_position_bias_table(table, target)
    side, new = 2 * source - 1, 2 * target - 1
    # The official Swin repository's load_pretrained: the table as a (1, heads, S, S) image, bicubic.
    image = torch.from_numpy(table).T.reshape(1, heads, side, side)
    expected = torch.nn.functional.interpolate(image, size=(new, new), mode="bicubic", align_corners=False)
    np.testing.assert_allclose(out, expected.reshape(heads, -1).T.numpy(), atol=1e-5)
    assert out.shape == (new * new, heads) and out.dtype == np.float32


def test_constant_table_stays_constant_and_same_window_is_unchanged():
    table = np.full((49, 2), 0.25, np.float32)
    np.testing.assert_allclose(resize_relative_position_bias_table(table, 12), 0.25, atol=1e-6)
    np.testing.assert_allclose(bicubic_matrix(7, 23).sum(axis=1), 1.0, atol=1e-12)  # weights sum to one
    random = np.random.default_rng(0).normal(size=(49, 2)).astype(np.float32)
    assert resize_relative_position_bias_table(random, 4) is random


def test_rejects_tables_that_are_not_square_offset_grids():
    for table, message in [(np.zeros(49), "shape"), (np.zeros((48, 2)), "48 rows is not"),
                           (np.zeros((36, 2)), "36 rows is not")]:
        with pytest.raises(ValueError, match=message):
            resize_relative_position_bias_table(table, 3)


def test_shrinking_a_position_table_matches_timms_antialiased_bicubic():
    """A 224-px checkpoint for smaller images: timm's resample_abs_pos_embed calls F.interpolate(bicubic,
    antialias=True); tfvit's resize_position_embedding low-pass filters the same way when it shrinks."""
    torch = pytest.importorskip("torch")
    from tfvit.layers import resize_position_embedding

    rng = np.random.default_rng(3)
    for source, target in [((14, 14), (8, 8)), ((14, 14), (2, 2)), ((7, 7), (4, 4)), ((14, 14), (7, 10))]:
        table = rng.normal(size=(1, 1 + source[0] * source[1], 8)).astype(np.float32)
        ours = resize_position_embedding(table, source, target)
        grid = torch.from_numpy(table[0, 1:].reshape(*source, 8)).permute(2, 0, 1)[None]
        expected = torch.nn.functional.interpolate(grid, size=target, mode="bicubic", antialias=True,
                                                   align_corners=False)[0].permute(1, 2, 0).reshape(1, -1, 8)
        np.testing.assert_allclose(ours[:, 1:], expected.numpy(), atol=1e-5)
        np.testing.assert_array_equal(ours[:, :1], table[:, :1])  # the class token is kept
