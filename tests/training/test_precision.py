import keras
import numpy as np
import pytest

from tfvit.training.precision import precision, set_precision


@pytest.mark.parametrize("given,name", [
    ("float32", "float32"), ("fp32", "float32"), ("FP32", "float32"),
    ("mixed_float16", "mixed_float16"), ("fp16", "mixed_float16"),
    ("mixed_bfloat16", "mixed_bfloat16"), ("bf16", "mixed_bfloat16"),
    (keras.DTypePolicy("mixed_bfloat16"), "mixed_bfloat16"),
])
def test_set_precision(given, name):
    assert set_precision(given) == name
    assert keras.mixed_precision.global_policy().name == name


def test_layers_built_under_the_policy_compute_in_it():
    set_precision("bf16")
    layer = keras.layers.Dense(2)
    y = layer(np.ones((1, 3), "float32"))
    assert layer.kernel.dtype == "float32" and keras.backend.standardize_dtype(y.dtype) == "bfloat16"


def test_context_manager_restores_previous_policy():
    set_precision("fp16")
    with precision("bf16") as name:
        assert name == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"


def test_context_manager_restores_on_error():
    with pytest.raises(RuntimeError):
        with precision("fp16"):
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_unknown_policy_lists_allowed_values_and_changes_nothing():
    with pytest.raises(ValueError, match="policy must be one of .*'bf16'.*got 'float64'"):
        set_precision("float64")
    with pytest.raises(ValueError, match="got 16"):
        with precision(16):
            pass
    assert keras.mixed_precision.global_policy().name == "float32"
