import numpy as np
import pytest

from tfvit.layers import MLP
from tests import reference


def test_mlp_matches_two_dense_layers_with_exact_gelu():
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    layer = MLP(32)
    out = layer(x).numpy()
    assert out.shape == (2, 5, 8)
    expected = reference.mlp(x.astype(np.float64), reference.weights_of(layer), "")
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_mlp_out_dim_and_bad_arguments():
    assert MLP(16, out_dim=3)(np.zeros((1, 4), "float32")).shape == (1, 3)
    with pytest.raises(ValueError, match="hidden_dim"):
        MLP(0)
    with pytest.raises(ValueError, match="dropout"):
        MLP(8, dropout=1.5)
