"""The end of a run is as safe as its middle: a recipe process killed (SIGKILL) or interrupted (SIGINT) at any point
of its final evaluation and final writes, then run again with the same command, ends with the uninterrupted run's
result.json figures and final weights, bit for bit; with early stopping too, where the run again must not train on.

The processes are tests/recipes/end_of_run_child.py, which waits for this test at each point of the run's end. One
run goes on uninterrupted: the reference. While it waits before its final evaluation, its log folder (every epoch
saved, nothing of the end written) is copied; each kill then starts from a copy, so it costs no training.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.recipes.loading import ROOT, load_recipe
from tools.localhost_workers import weights_file_arrays

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
# What a result says about the trained model and its training (its wall time in this call is the one figure
# that differs between a run and its restart).
FIGURES = ("test_accuracy", "test_loss", "train_accuracy", "best_test_accuracy", "epochs_run", "stopped_early",
           "updates", "steps_per_epoch", "traced_epochs", "history", "params", "config")


def recipe_args(data, logdir, *extra):
    return ["--dataset", "mnist", "--data-dir", str(data), "--model", "vit_mnist_patch4_28", "--batch-size", "32",
            "--accum", "1", "--limit-train", "64", "--limit-test", "64", "--precision", "float32", "--no-jit",
            "--verbose", "0", "--logdir", str(logdir), *extra]


class Child:
    """A recipe process of end_of_run_child: ``until(point)`` lets it go on to the first announcement ``@@point``
    and leaves it waiting there."""

    def __init__(self, args, tmp_path):
        self.err = open(tmp_path / f"stderr-{time.time_ns()}.txt", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.recipes.end_of_run_child", "gao_swin", *args], cwd=ROOT, env=ENV,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
            # SIGINT's default handler, whatever this process inherited (a shell's background job ignores it).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.waiting = False

    def until(self, point):
        while True:
            if self.waiting:
                self.go_on()
            line = self.process.stdout.readline()
            assert line, f"the child ended before @@{point}:\n{self.stderr()}"
            if line.startswith("@@"):
                self.waiting = True
                if line.strip() == f"@@{point}":
                    return

    def go_on(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        self.waiting = False

    def finish(self):
        """Let it run to its end, answering every point; returns its exit status."""
        while True:
            if self.waiting:
                self.go_on()
            line = self.process.stdout.readline()
            if not line:
                break
            self.waiting = line.startswith("@@")
        return self.process.wait(timeout=120)

    def stop(self, signum):
        """Send ``signum`` while it waits; returns its exit status."""
        self.process.send_signal(signum)
        self.process.stdout.read()  # what it printed before it stopped
        return self.process.wait(timeout=120)

    def stderr(self):
        self.err.seek(0)
        return self.err.read()


def the_run(logdir):
    """(result, final weights, folder) of the one run under ``logdir``."""
    (folder,) = {p.parent for p in (Path(logdir) / "gao_swin" / "mnist").glob("*/*/config.json")}
    result = json.loads((folder / "result.json").read_text())
    return result, weights_file_arrays(folder / "model.weights.h5"), folder


def assert_same_run(logdir, reference):
    result, weights, folder = the_run(logdir)
    expected, expected_weights, _ = reference
    assert result["status"] == "ok"
    assert {k: result[k] for k in FIGURES} == {k: expected[k] for k in FIGURES}
    assert len(weights) == len(expected_weights)
    for a, b in zip(weights, expected_weights):
        np.testing.assert_array_equal(a, b)
    assert not (folder / "resume").exists()  # deleted once the result and the weights it names were written


# (point, signal sent while the child waits there)
KILLS = [
    ("evaluate", signal.SIGKILL),       # the final evaluation is about to begin
    ("eval_batch", signal.SIGINT),      # inside it, after its first batch
    ("weights_in_place", signal.SIGKILL),  # written in full under a temporary name
    ("weights_written", signal.SIGINT),  # weights in place, result.json not yet
    ("result_in_place", signal.SIGKILL),  # result.json written under a temporary name
    ("result_written", signal.SIGINT),  # result in place, the resume state not yet deleted
]
EARLY_STOP_KILLS = [
    ("evaluate", signal.SIGINT),
    ("eval_batch", signal.SIGKILL),
    ("weights_in_place", signal.SIGKILL),
]


def kill_at_each_point_and_rerun(tmp_path, data, extra, kills):
    reference = Child(recipe_args(data, tmp_path / "whole", *extra), tmp_path)
    reference.until("evaluate")
    # Every epoch is saved and nothing of the run's end is written: the state each kill starts from.
    shutil.copytree(tmp_path / "whole", tmp_path / "trained")
    assert reference.finish() == 0, reference.stderr()
    whole = the_run(tmp_path / "whole")
    for i, (point, signum) in enumerate(kills):
        logdir = tmp_path / f"killed{i}"
        shutil.copytree(tmp_path / "trained", logdir)
        child = Child(recipe_args(data, logdir, *extra), tmp_path)
        child.until(point)
        status = child.stop(signum)
        where = f"{signum.name} at {point}"
        if signum == signal.SIGKILL:
            assert status == -signal.SIGKILL, where
        else:
            assert status == 130, f"{where}:\n{child.stderr()}"
            said = child.stderr().strip().splitlines()[-1]
            assert "Traceback" not in child.stderr(), f"{where}:\n{child.stderr()}"
            assert said.endswith("run the same command to go on" if point == "result_written" else
                                 "run the same command to finish"), f"{where}: {said}"
        load_recipe("gao_swin").main(recipe_args(data, logdir, *extra))  # the same command again
        assert_same_run(logdir, whole)
    return whole


def test_killed_or_interrupted_anywhere_in_a_runs_end_the_same_command_gives_the_uninterrupted_result(
        tmp_path, owner_data):
    result, _, _ = kill_at_each_point_and_rerun(tmp_path, owner_data, ["--epochs", "2"], KILLS)
    assert result["epochs_run"] == 2 and not result["stopped_early"]


@pytest.mark.parametrize("kills", [EARLY_STOP_KILLS])
def test_an_early_stopped_run_killed_in_its_end_is_finished_not_trained_on(tmp_path, owner_data, kills):
    # A rate too small to change a prediction: the validation accuracy stays as it is, so patience 1 stops the
    # run after its second epoch, of six.
    extra = ["--epochs", "6", "--patience", "1", "--lr", "1e-9", "--warmup-epochs", "0"]
    result, _, _ = kill_at_each_point_and_rerun(tmp_path, owner_data, extra, kills)
    assert result["stopped_early"] and result["epochs_run"] == 2 and result["history"]["epoch"] == [0, 1]


def test_a_full_disk_at_the_final_writes_keeps_the_trained_state_and_says_how_to_finish(tmp_path, owner_data,
                                                                                        capsys, monkeypatch):
    import errno

    from keras.src.saving import saving_lib

    from tests.recipes.test_user_errors import called
    from tfvit.experiments.cli import run_recipe

    run_module = sys.modules["tfvit.experiments.run"]
    main = load_recipe("gao_swin").main
    args = recipe_args(owner_data, tmp_path / "logs", "--epochs", "1")
    folder = tmp_path / "logs" / "gao_swin" / "mnist" / "accumulation" / "b32-acc1-lr1e-3-e1"
    full = OSError(errno.ENOSPC, "No space left on device")
    write_weights, write_json = saving_lib.save_weights_only, run_module.write_json

    def weights_then_full(model, path, **kwargs):
        write_weights(model, path, **kwargs)
        raise full

    monkeypatch.setattr(saving_lib, "save_weights_only", weights_then_full)
    code, err = called(main, args, capsys)
    assert code == 1 and err.startswith("error: cannot write the final weights of accumulation/b32-acc1-lr1e-3-e1 to ")
    assert f"No space left on device. The trained state is kept in {folder / 'resume'}" in err
    assert "run the same command to finish the run without training it again" in err
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".h5")]  # neither the file nor a partial one
    assert (folder / "resume").is_dir() and not (folder / "result.json").exists()
    monkeypatch.setattr(saving_lib, "save_weights_only", write_weights)

    monkeypatch.setattr(run_module, "write_json", lambda path, obj: (_ for _ in ()).throw(full))
    code, err = called(main, args, capsys)
    assert code == 1 and err.startswith("error: cannot write the result of accumulation/b32-acc1-lr1e-3-e1 to ")
    assert (folder / "resume").is_dir() and not (folder / "result.json").exists()
    monkeypatch.setattr(run_module, "write_json", write_json)

    run_recipe(main, args + ["--verbose", "1"])  # space again: the same command finishes the run, not training it
    out = capsys.readouterr().out
    assert "accumulation/b32-acc1-lr1e-3-e1: all 1 epochs are saved; evaluating it" in out and "Epoch 1/1" not in out
    result, _, _ = the_run(tmp_path / "logs")
    assert result["status"] == "ok" and result["epochs_run"] == 1 and not (folder / "resume").exists()

    # --save-best asked of the finished run: its best epoch was not kept, and that is said, not silently passed over.
    run_recipe(main, args + ["--save-best"])
    err = capsys.readouterr().err
    assert "note: --save-best: accumulation/b32-acc1-lr1e-3-e1 finished earlier without it" in err
    assert not (folder / "best.keras").exists()
