"""JSON files are strict (non-finite values as null, never the bare words NaN / Infinity) and written atomically;
a study's results.json says per run whether any of its values was not finite."""

import json
import math
import os

import numpy as np
import pytest

from tfvit.experiments.json_output import finite_json, non_finite_keys, write_json
from tfvit.experiments.report import write_tables


def strict(text):
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as strict JSON readers do."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_null_and_are_named():
    obj = {"a": 1.0, "b": float("nan"), "c": [1, float("inf"), {"d": -math.inf}], "e": np.float32("nan"),
           "f": np.array([1.0, np.nan]), "g": (np.int64(3), "text", None, True)}
    assert finite_json(obj) == {"a": 1.0, "b": None, "c": [1, None, {"d": None}], "e": None, "f": [1.0, None],
                                "g": [3, "text", None, True]}
    assert non_finite_keys(obj) == ["b", "c", "c.d", "e", "f"]
    assert non_finite_keys({"x": [1.0, 2.0]}) == [] and non_finite_keys(float("nan")) == ["<value>"]


def test_write_json_is_strict_and_atomic(tmp_path):
    path = tmp_path / "result.json"
    assert write_json(path, {"loss": float("nan"), "curve": [0.5, float("inf")]}) == str(path)
    assert strict(path.read_text()) == {"loss": None, "curve": [0.5, None]}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as open() would have made it
    # A value json cannot write leaves the old file whole and no temporary file behind.
    with pytest.raises(TypeError):
        write_json(path, {"loss": object()})
    assert strict(path.read_text()) == {"loss": None, "curve": [0.5, None]}
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def result(name, test_loss, losses):
    config = {"dataset": "mnist", "model": "vit", "batch_size": 8, "accum": 1, "learning_rate": 1e-3, "epochs": 2}
    return {"name": name, "config": config, "group": name, "micro_batch": 8, "epochs_run": 2, "train_accuracy": 0.5,
            "test_accuracy": 0.5, "test_loss": test_loss, "time_per_epoch": 1.0, "first_epoch_time": 2.0,
            "time_per_step": 0.1, "peak_memory_mb": 100.0, "history": {"epoch": [0, 1], "loss": losses}}


def test_results_json_is_strict_and_each_run_carries_its_status(tmp_path):
    results = [result("fine", 0.7, [1.0, 0.8]), result("diverged", float("nan"), [1.0, float("nan")])]
    paths = write_tables(results, tmp_path)
    with open(paths["json"]) as f:
        written = strict(f.read())
    assert [r["status"] for r in written] == ["ok", "non-finite: test_loss, history.loss"]
    assert written[1]["test_loss"] is None and written[1]["history"]["loss"] == [1.0, None]
    assert "status" not in results[0]  # the caller's results are left as they were
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.json", "results.md"]
