"""tfvit on Keras's JAX backend: ``KERAS_BACKEND=jax python -m pytest tests/jax`` (tests/conftest.py
collects this folder only then, and nothing else)."""

import importlib.util
import os

import pytest


def require_jax_backend():
    """Skip the calling test module unless jax is installed and Keras runs on it. Call it before
    importing keras: with KERAS_BACKEND=jax and no jax, importing keras fails."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed: pip install -e '.[jax]'", allow_module_level=True)
    if os.environ.get("KERAS_BACKEND") != "jax":
        pytest.skip("the tests/jax tests run under KERAS_BACKEND=jax", allow_module_level=True)
