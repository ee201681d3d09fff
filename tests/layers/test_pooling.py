import numpy as np
import pytest

from tfvit.layers import TokenPooling


def test_token_and_mean_pooling():
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_array_equal(TokenPooling("token")(x).numpy(), x[:, 0])
    np.testing.assert_allclose(TokenPooling("mean", num_prefix_tokens=1)(x).numpy(), x[:, 1:].mean(1), atol=1e-6)
    grid = x.reshape(2, 5, 1, 3)
    np.testing.assert_allclose(TokenPooling("mean", num_prefix_tokens=0)(grid).numpy(), x.mean(1), atol=1e-6)


def test_pooling_arguments_are_checked():
    with pytest.raises(ValueError, match="pooling must be one of"):
        TokenPooling("max")
    with pytest.raises(ValueError, match="class token"):
        TokenPooling("token", num_prefix_tokens=0)
