"""Import timm without torchvision, for the tests that compare with timm (tests/convert, tests/training): the
stand-in of tools/timm_import.py, skipping the test where torch or timm is not installed."""

import pytest

from tools import timm_import


def import_timm():
    """The timm module (with the stand-in if torchvision does not import); skips when torch or timm is absent."""
    pytest.importorskip("torch")
    try:
        return timm_import.import_timm()
    except ImportError as missing:
        pytest.skip(f"timm is not installed: {missing}")
