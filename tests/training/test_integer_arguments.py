"""Any integer type is an integer (issue 16): numpy's integers, as a sweep or a config file gives them, are accepted
wherever tfvit validates an integer (GradientAccumulationModel's accum, model sizes), stored as Python ints, and bool
is still refused."""

import json

import keras
import numpy as np
import pytest

from tfvit.models import VisionTransformer
from tfvit.training import GradientAccumulationModel


def tiny():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


@pytest.mark.parametrize("accum", [np.int64(2), np.int32(3), np.uint8(4)])
def test_accum_takes_numpy_integers(accum, tmp_path):
    wrapper = GradientAccumulationModel(tiny(), accum=accum)
    assert wrapper.accum == int(accum) and type(wrapper.accum) is int
    assert wrapper.name.endswith(f"_accumulate{int(accum)}")
    json.dumps(wrapper.get_config())  # a Python int, serializable
    wrapper.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    wrapper.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "wrapped.keras")
    wrapper.save(path)
    assert keras.saving.load_model(path).accum == int(accum)


@pytest.mark.parametrize("accum", [True, 2.0, "2", 0, np.int64(-1)])
def test_accum_refuses_what_is_no_positive_integer(accum):
    with pytest.raises(ValueError, match=r"accum must be a positive integer, got"):
        GradientAccumulationModel(tiny(), accum=accum)


def test_model_sizes_take_numpy_integers():
    model = VisionTransformer(image_size=np.int64(8), in_channels=np.int32(1), patch_size=np.int64(4),
                              embed_dim=np.int64(8), depth=np.int64(1), num_heads=np.int64(2), num_classes=np.int64(3))
    config = model.get_config()
    for key in ("in_channels", "embed_dim", "depth", "num_heads", "num_classes"):
        assert type(config[key]) is int, key
    json.dumps(config)
    assert model(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 3)
