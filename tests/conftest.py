import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No test reaches for the Hugging Face hub: those about hub checkpoints write a cache of their own
# (tests/convert/hub_cache.py) and set the client's environment in the processes they start.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# tests/jax runs only under KERAS_BACKEND=jax, and then alone: every other folder is the TensorFlow
# suite. Read from the environment, not from keras, so that pytest-xdist's controller never loads it.
_HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("KERAS_BACKEND") == "jax":
    collect_ignore = sorted(name for name in os.listdir(_HERE) if name.startswith("test_") or (
        os.path.isdir(os.path.join(_HERE, name)) and name not in ("jax", "__pycache__")))
else:
    collect_ignore = ["jax"]


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts in float32 with a fixed seed, whatever the previous test set."""
    import keras  # imported here so that pytest-xdist's controller process never loads TensorFlow

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")
    # Keras's state is reset; the full garbage collection that clear_session() runs by default is not:
    # it cost about 4 s per test once a worker held TensorFlow's traced functions (178 s of teardown over
    # the 374 tests of tests/training and tests/layers), and Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="session")
def owner_data(tmp_path_factory):
    """A folder of small MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 copies in the owners' own file formats,
    written once per test session (per pytest-xdist worker): the data the data and recipe tests read, on any
    machine. Contents: tests/owner_files.py (``arrays(name, split)`` gives what the files hold). Tests must not
    change it: copy what a test damages."""
    from tests.owner_files import write_all

    return write_all(tmp_path_factory.mktemp("owner_data"))
