import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts in float32 with a fixed seed, whatever the previous test set."""
    import keras  # imported here so that pytest-xdist's controller process never loads TensorFlow

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()
