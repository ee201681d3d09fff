"""Fixtures for tfvit.data tests: the generated owners'-format datasets (``owner_data``, tests/conftest.py) for
every test, the real datasets for the few tests whose subject is the real files, and a clean environment."""

from pathlib import Path

import pytest

from tests.recipes.loading import REAL_DATA, REAL_DATA_ORIGIN, real_dataset

# Debian's dataset-fashion-mnist package: the full Fashion-MNIST.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_user_data_settings(monkeypatch):
    """A user's TFVIT_DATA_DIR / TFVIT_OFFLINE must not change what the tests read (the real-data location was
    read from TFVIT_DATA_DIR before this runs: tests/recipes/loading.py)."""
    monkeypatch.delenv("TFVIT_DATA_DIR", raising=False)
    monkeypatch.delenv("TFVIT_OFFLINE", raising=False)


def _real(name, what):
    folder = real_dataset(name)
    if folder is None:
        pytest.skip(f"real-data extra: no real {what} at {REAL_DATA} ({REAL_DATA_ORIGIN}; set TFVIT_DATA_DIR or "
                    f"TFVIT_TEST_SHARED_DATA to a folder of the owners' files)")
    return folder


@pytest.fixture
def real_cifar10():
    """The folder holding the real CIFAR-10 (its .tar.gz or extracted folder), or a skip."""
    return _real("cifar10", "CIFAR-10")


@pytest.fixture
def real_mnist():
    """The folder holding the real MNIST IDX files, or a skip (load_arrays(data_dir=REAL_DATA) reads them)."""
    return _real("mnist", "MNIST")


@pytest.fixture
def fashion_dir():
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return DEBIAN_FASHION_MNIST
