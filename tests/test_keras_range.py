"""The Keras range tfvit's private overrides are tested with: declared once in setup.cfg, enforced by
tfvit/_keras_range.py where the overrides are used."""

import configparser
import re
from pathlib import Path

import keras
import pytest

from tfvit._keras_range import TESTED_KERAS, require_tested_keras

ROOT = Path(__file__).resolve().parents[1]


def test_the_enforced_range_is_the_one_setup_cfg_declares():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    (line,) = [r for r in config["options"]["install_requires"].splitlines() if r.strip().startswith("keras")]
    numbers = [int(n) for n in re.fullmatch(r"\s*keras>=(\d+)\.(\d+),<(\d+)\.(\d+)\s*", line).groups()]
    assert TESTED_KERAS == (tuple(numbers[:2]), tuple(numbers[2:]))


def test_the_installed_keras_is_in_the_range():
    require_tested_keras("this test", keras.version())


@pytest.mark.parametrize("version", ["3.14.9", "3.16.0", "4.0.0"])
def test_a_keras_outside_the_range_is_refused_with_what_to_install(version):
    with pytest.raises(RuntimeError, match=rf"tfvit.training.optimizers.AdamW .*Keras {re.escape(version)}.*pip install"):
        require_tested_keras("tfvit.training.optimizers.AdamW", version)


def test_the_optimizers_and_randaugment_check_the_version(monkeypatch):
    from tfvit.data import augment
    from tfvit.training import build_optimizer

    monkeypatch.setattr(keras, "version", lambda: "3.99.0")
    with pytest.raises(RuntimeError, match="AdamW"):
        build_optimizer("adamw", 1e-3)
    with pytest.raises(RuntimeError, match="RandAugment"):
        augment._KeyedRandAugment()
