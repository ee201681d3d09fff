"""recipes/gao_swin.py end to end on the generated owners'-format MNIST (fixture ``owner_data``): what it writes,
that its two arms train identically with the default flags, that the same seed gives the same weights, and that
a killed run restarted with the same command ends as an uninterrupted run does (and that run learns)."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from tests.recipes.loading import ROOT, load_recipe
from tfvit.experiments import gao
from tfvit.training import training_defaults
from tfvit.training.resume import resume_epoch
from tools.localhost_workers import weights_file_arrays


def quick(data_dir):
    """A small registry model keeps the recipe's own plumbing the subject of these tests."""
    return ["--dataset", "mnist", "--data-dir", str(data_dir), "--model", "vit_mnist_patch4_28", "--batch-size", "32",
            "--limit-test", "64", "--verbose", "0"]


def final_variables(out_dir):
    """The final weights of every finished run under ``out_dir`` (its model.weights.h5), by run folder."""
    return {str(Path(path).parent.relative_to(out_dir)): weights_file_arrays(path)
            for path in glob.glob(str(out_dir / "*" / "*" / "model.weights.h5"))}


def tags(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    names = set()
    for events in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        accumulator = EventAccumulator(events, size_guidance={"tensors": 0, "scalars": 0})
        accumulator.Reload()
        names |= set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
    return names


def test_compare_with_default_flags_writes_its_outputs_and_trains_both_arms_identically(tmp_path, owner_data):
    # The recipe's own model and regularisation (Swin, stochastic depth 0.1, batch 128) on MNIST:
    # what it writes, and that the accumulation arm and the baseline at the same effective batch train
    # the same model.
    load_recipe("gao_swin").main(["--accum", "4", "--compare", "--dataset", "mnist", "--data-dir", str(owner_data),
                                  "--epochs", "2", "--limit-train", "256", "--limit-test", "64", "--verbose", "0",
                                  "--logdir", str(tmp_path)])
    out = tmp_path / "gao_swin" / "mnist"
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["accum"], r["batch"], r["micro-batch"]) for r in rows] == [
        ("accumulation", "4", "128", "32"), ("baseline-effective", "1", "128", "128")]
    for row in rows:
        assert 0.0 <= float(row["test acc"]) <= 1.0 and float(row["time/epoch (s, steady)"]) > 0
    assert (out / "results.md").read_text().count("\n| mnist |") == 2
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert [len(r["history"]["epoch"]) for r in results] == [2, 2]
    # TensorBoard's run names: the arm the tables compare, then the settings that tell the runs apart.
    assert [r["folder"] for r in results] == ["accumulation/b128-acc4-lr1e-3-e2", "baseline-effective/b128-acc1-lr1e-3-e2"]
    for run in results:
        run_dir = out / run["folder"]
        train_tags = tags(run_dir / "train")
        # (The step scalars, written every 10 updates, are checked on the longer run of the kill test.)
        assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_time", "epoch_step_time",
                "epoch_images_per_second", "epoch_peak_memory_mb"} <= train_tags
        assert {"epoch_loss", "epoch_accuracy"} <= tags(run_dir / "validation")
        assert {"test_accuracy", "time_per_epoch", "images_per_second", "peak_memory_mb"} <= tags(run_dir / "result")
        assert "_hparams_/session_start_info" in tags(run_dir)
        hparams = json.loads((run_dir / "hparams.json").read_text())
        assert hparams["run_id"] == run["name"] and hparams["arm"] == run["group"]
        assert hparams["drop_path"] == 0.1 and hparams["train_examples"] == 256  # the values used, not -1 or 0
        # A finished run keeps its final weights and result, not the resume state or (by default) best.keras.
        assert (run_dir / "model.weights.h5").exists() and not (run_dir / "resume").exists()
        with h5py.File(run_dir / "model.weights.h5", "r") as weights:
            assert "optimizer" not in weights  # the moments are three times the weights and no longer needed
        assert not (run_dir / "best.keras").exists()

    accumulated, baseline = results
    assert accumulated["config"]["drop_path"] < 0  # the model's own rate: stochastic depth is on
    # The default flags train in this device's fastest settings; the arms agree to that policy's precision.
    defaults = training_defaults()
    assert (accumulated["config"]["precision"], accumulated["config"]["jit"]) == (defaults.precision,
                                                                                  defaults.jit_compile)
    tolerance = gao.LOSS_TOLERANCE[defaults.precision]
    np.testing.assert_allclose(accumulated["test_loss"], baseline["test_loss"], rtol=tolerance)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(accumulated["history"][key], baseline["history"][key], rtol=tolerance)
    comparison = (out / "comparison.md").read_text()
    expected = ("identical within float32 tolerance" if defaults.precision == "float32"
                else f"within the {defaults.precision} tolerance")
    assert "baseline-effective" in comparison and expected in comparison


def test_same_seed_gives_identical_weights(tmp_path, owner_data):
    args = quick(owner_data) + ["--accum", "2", "--epochs", "1", "--limit-train", "96"]
    load_recipe("gao_swin").main(args + ["--logdir", str(tmp_path / "first")])
    load_recipe("gao_swin").main(args + ["--logdir", str(tmp_path / "second")])
    first = final_variables(tmp_path / "first" / "gao_swin" / "mnist")
    second = final_variables(tmp_path / "second" / "gao_swin" / "mnist")
    assert first.keys() == second.keys() and len(first) == 1
    for name in first:
        for a, b in zip(first[name], second[name]):
            np.testing.assert_array_equal(a, b)


def test_killed_run_restarted_with_the_same_command_ends_as_uninterrupted(tmp_path, owner_data):
    def command(logdir):
        return [sys.executable, str(ROOT / "recipes" / "gao_swin.py"), *quick(owner_data), "--accum", "2",
                "--epochs", "6", "--limit-train", "128", "--logdir", str(logdir)]

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True, timeout=600)

    logdir = tmp_path / "killed"
    process = subprocess.Popen(command(logdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    state = None
    while time.time() < deadline and process.poll() is None:
        found = glob.glob(str(logdir / "gao_swin" / "mnist" / "*" / "*" / "resume" / "epoch-*" / "state.json"))
        if found and json.loads(Path(found[0]).read_text())["epoch"] >= 2:
            state = found[0]
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert state is not None, "the run finished or failed before it could be killed"
    killed_at = resume_epoch(Path(state).parents[1])
    assert killed_at < 6 and not glob.glob(str(logdir / "gao_swin" / "mnist" / "*" / "*" / "result.json"))

    subprocess.run(command(logdir), check=True, env=env, capture_output=True, timeout=600)
    whole = final_variables(tmp_path / "whole" / "gao_swin" / "mnist")
    (whole_run,) = glob.glob(str(tmp_path / "whole" / "gao_swin" / "mnist" / "*" / "*" / "train"))
    assert {"step_loss", "step_learning_rate"} <= tags(whole_run)  # 24 updates: steps 10 and 20 logged
    resumed = final_variables(logdir / "gao_swin" / "mnist")
    assert whole.keys() == resumed.keys()
    for name in whole:
        for a, b in zip(whole[name], resumed[name]):
            np.testing.assert_array_equal(a, b)
    history = list(csv.DictReader(open(glob.glob(str(logdir / "gao_swin" / "mnist" / "*" / "*" / "history.csv"))[0])))
    assert sorted({int(r["epoch"]) for r in history}) == list(range(6))
    # The run learned: after 24 updates the test loss is well below chance level (ln 10 = 2.30, the loss of
    # predicting the class frequencies, where a model that learned nothing from the images stops): 2.82 after the
    # first epoch, 1.65 at the end on a CPU. The generated digits' class is in their pattern, as a real digit's is.
    (result,) = glob.glob(str(tmp_path / "whole" / "gao_swin" / "mnist" / "*" / "*" / "result.json"))
    result = json.loads(Path(result).read_text())
    assert result["test_loss"] < min(2.0, result["history"]["val_loss"][0])
