import numpy as np
import pytest

from tfvit.layers import DropPath


def test_drop_path_is_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(8, 3, 4)).astype("float32")
    np.testing.assert_array_equal(DropPath(0.5)(x, training=False).numpy(), x)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    rate, batch = 0.3, 4000
    x = np.ones((batch, 2, 3), "float32")
    out = DropPath(rate, seed=0)(x, training=True).numpy()
    per_sample = out.reshape(batch, -1)
    # Each sample is all zeros or all 1/(1-rate): the branch is dropped as a whole.
    kept = np.all(np.isclose(per_sample, 1 / (1 - rate)), axis=1)
    dropped = np.all(per_sample == 0, axis=1)
    assert np.all(kept | dropped)
    # Binomial(4000, 0.7): standard deviation 0.0072 of the kept fraction; 5 sigma.
    assert abs(kept.mean() - (1 - rate)) < 0.036
    assert abs(out.mean() - 1.0) < 0.06


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_drop_path_rejects_rates_outside_unit_interval(rate):
    with pytest.raises(ValueError, match="rate"):
        DropPath(rate)
