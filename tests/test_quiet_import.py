"""TensorFlow's start-up lines obey TF_CPP_MIN_LOG_LEVEL once tfvit imports it (tfvit/_quiet_import.py)."""

import os
import subprocess
import sys

import pytest

from tfvit import _quiet_import

SAMPLE = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796171418.790000   31133 port.cc:153] oneDNN custom operations are on.
W0000 00:00:1796171418.790517   31133 some.cc:31] a warning
E0000 00:00:1796171418.790517   31133 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers
/usr/lib/python3/site.py:1: UserWarning: a Python warning"""


@pytest.mark.parametrize("level, kept", [(0, [0, 1, 2, 3, 4, 5]), (1, [2, 3, 5]), (2, [3, 5]), (3, [5])])
def test_lines_below_the_level_are_dropped_and_the_rest_kept(level, kept):
    lines = SAMPLE.splitlines()
    assert _quiet_import.kept_lines(SAMPLE, level) == [lines[i] for i in kept]


def test_expected_messages_are_dropped_only_from_level_2(capfd, monkeypatch):
    for level, shown in (("2", ["E0000 other error"]), ("1", ["E0000 failed call to cuInit", "E0000 other error"])):
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
        with _quiet_import.filtered_native_stderr(expected=("failed call to cuInit",)):
            os.write(2, b"E0000 failed call to cuInit\nI0000 info\nE0000 other error\n")
        assert capfd.readouterr().err.splitlines() == shown


def noise(code, level):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=str(level), KERAS_BACKEND="tensorflow")
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stderr
    return [line for line in err.splitlines() if line.strip() == _quiet_import._ABSL_BANNER
            or _quiet_import._SEVERITY.match(line)]


def test_importing_tfvit_is_quiet_at_level_2_where_plain_tensorflow_is_not():
    plain = noise("import tensorflow", 2)  # TensorFlow ignores the level before absl is initialised
    assert noise("import tfvit; tfvit.training.training_defaults()", 2) == []
    if plain:  # where TensorFlow logs at start-up, level 0 still shows it through tfvit
        assert noise("import tfvit", 0)
