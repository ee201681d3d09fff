"""Fixtures for tfvit.data tests: the real (partial) datasets shipped beside the repository, and a clean env."""

from pathlib import Path

import pytest

# ../shared/data next to the repository: official-format CIFAR-10 (first 1017 images of each batch) and MNIST
# (first 17,435 training images, all test images).
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# Debian's dataset-fashion-mnist package: the full Fashion-MNIST.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_user_data_settings(monkeypatch):
    """A user's TFVIT_DATA_DIR / TFVIT_OFFLINE must not change what the tests read."""
    monkeypatch.delenv("TFVIT_DATA_DIR", raising=False)
    monkeypatch.delenv("TFVIT_OFFLINE", raising=False)


@pytest.fixture
def shared_data():
    if not (SHARED_DATA / "cifar-10-python.tar.gz").is_file() or not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"the shared offline datasets are not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fashion_dir():
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return DEBIAN_FASHION_MNIST
