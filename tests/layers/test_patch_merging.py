import numpy as np
import pytest

from tfvit.layers import PatchMerging
from tests import reference


@pytest.mark.parametrize("grid", [(4, 6), (7, 5)])
def test_patch_merging_matches_official_concatenation_order(grid):
    x = np.random.default_rng(0).normal(size=(2, *grid, 4)).astype("float32")
    layer = PatchMerging()
    out = layer(x).numpy()
    assert out.shape == (2, (grid[0] + 1) // 2, (grid[1] + 1) // 2, 8)
    w = reference.weights_of(layer)
    assert sorted(w) == ["norm/beta", "norm/gamma", "reduction/kernel"]  # no bias, as in the paper
    for b in range(2):
        np.testing.assert_allclose(out[b], reference.patch_merging(x[b].astype(np.float64), w, ""), atol=1e-5)


def test_patch_merging_custom_width():
    assert PatchMerging(out_dim=5)(np.zeros((1, 4, 4, 3), "float32")).shape == (1, 2, 2, 5)
