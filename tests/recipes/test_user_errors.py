"""A user's mistakes and interruptions end in clear words: ``run_recipe`` prints one paragraph ``error: ...`` and
exits with 1 for tfvit's user-facing errors (missing or damaged data, a configuration tfvit refuses, a path that
cannot be used), keeps the traceback of anything else and with ``--debug``, and turns Ctrl-C into one line saying
which epochs are saved (exit 130); the same command then resumes. The recipes run as commands here, in
subprocesses, on a tiny MNIST written in the owners' IDX format (tests/owner_files.py)."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.owner_files import write_idx_dataset
from tests.recipes.loading import ROOT, load_recipe
from tfvit.data import DataError
from tfvit.experiments import cli
from tfvit.experiments.cli import UsageError, prepare_logdir, run_recipe
from tfvit.training.resume import TrainingInterrupted, resume_epoch

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFVIT_OFFLINE="1")
TINY = ["--dataset", "mnist", "--model", "vit_mnist_patch4_28", "--batch-size", "64", "--limit-train", "256",
        "--limit-test", "64", "--precision", "float32", "--no-jit"]


def tiny_mnist(folder, train=256, test=64):
    """The owners' four MNIST files (tests/owner_files.py's learnable digits) in ``folder``; returns it."""
    return write_idx_dataset(folder, "mnist", count={"train": train, "test": test})


def recipe_command(*args, recipe="gao_swin"):
    return [sys.executable, str(ROOT / "recipes" / f"{recipe}.py"), *args]


def run_command(args, tmp_path, timeout=300):
    # tensorflow-datasets' fallback looks in an empty folder of its own, offline: missing data fails at once.
    env = dict(ENV, TFDS_DATA_DIR=str(tmp_path / "tfds"))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def raising(error):
    """A recipe main that raises ``error``."""
    def main(argv):
        raise error
    return main


def called(main, argv, capsys):
    """``run_recipe(main, argv)`` in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        run_recipe(main, argv)
    return stopped.value.code, capsys.readouterr().err


# ---------------------------------------------------------------- as commands, in subprocesses

def test_an_empty_data_folder_ends_in_one_paragraph_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    args = recipe_command(*TINY, "--epochs", "1", "--data-dir", str(tmp_path / "empty"), "--logdir",
                          str(tmp_path / "logs"), "--verbose", "0")
    done = run_command(args, tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: mnist (") and "Traceback" not in done.stderr
    assert "--data-dir" in done.stderr and str(tmp_path / "empty") in done.stderr
    assert "\n\n" not in done.stderr.strip()  # one paragraph

    debugged = run_command(args + ["--debug"], tmp_path)
    assert debugged.returncode == 1
    assert "Traceback (most recent call last)" in debugged.stderr and "DataError: mnist (" in debugged.stderr
    assert "\nerror: " not in debugged.stderr


def test_a_file_as_logdir_stops_before_training_naming_the_flag(tmp_path):
    logdir = tmp_path / "results.txt"
    logdir.write_text("not a folder")
    done = run_command(recipe_command(*TINY, "--data-dir", str(tiny_mnist(tmp_path / "data")), "--logdir",
                                      str(logdir)), tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --logdir '{logdir}' is a file, not a folder")
    assert "Traceback" not in done.stderr
    assert "[1/1]" not in done.stdout  # no run began


def test_a_bad_flag_value_is_argparses_usage_error(tmp_path):
    done = run_command(recipe_command(*TINY, "--accum", "0"), tmp_path)
    assert done.returncode == 2
    assert "argument --accum: expected an integer >= 1, got '0'" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_says_which_epochs_are_saved_and_the_same_command_resumes(tmp_path):
    logdir = tmp_path / "logs"
    epochs = 3
    data = tiny_mnist(tmp_path / "data")
    args = recipe_command(*TINY, "--accum", "1", "--epochs", str(epochs), "--data-dir", str(data), "--logdir",
                          str(logdir), "--verbose", "2")
    # SIGINT's default handler in the child, whatever this process inherited (a shell's background job ignores it).
    process = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    study = logdir / "gao_swin" / "mnist"
    pattern = str(study / "*" / "*" / "resume" / "epoch-*" / "state.json")
    deadline, sent = time.time() + 300, False
    while time.time() < deadline and process.poll() is None:
        found = glob.glob(pattern)
        try:
            if found and json.loads(Path(found[0]).read_text())["epoch"] >= 1:
                process.send_signal(signal.SIGINT)
                sent = True
                break
        except (OSError, ValueError):  # read while being replaced
            pass
        time.sleep(0.05)
    out, err = process.communicate(timeout=120)
    assert sent, f"the run ended before it could be interrupted:\n{err}"
    assert process.returncode == 130, err
    (resume,) = {Path(p).parents[1] for p in glob.glob(pattern)}
    saved = resume_epoch(resume)
    assert 1 <= saved < epochs, "the interrupt came after the last epoch"
    name = str(resume.parent.relative_to(study))  # the run's folder: <arm>/<short config>
    assert name == "accumulation/b64-acc1-lr1e-3-e3"
    kept = "epoch 1 is saved" if saved == 1 else f"epochs 1-{saved} are saved"
    assert err.strip() == f"interrupted in epoch {saved + 1}/{epochs} of {name}; {kept}; run the same command to " \
                          "continue"
    assert "Traceback" not in err and not (study / name / "result.json").exists()

    resumed = run_command(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {name} from epoch {saved + 1}/{epochs}\n" in resumed.stdout
    # The saved epochs are not trained again; the run ends with all of them.
    assert f"Epoch {saved}/{epochs}" not in resumed.stdout and f"Epoch {epochs}/{epochs}" in resumed.stdout
    result = json.loads((study / name / "result.json").read_text())
    assert result["epochs_run"] == epochs and result["history"]["epoch"] == list(range(epochs))


# ---------------------------------------------------------------- run_recipe in this process

def test_the_recipes_own_checks_end_in_one_paragraph(tmp_path, capsys):
    gao_swin = load_recipe("gao_swin").main
    data = str(tiny_mnist(tmp_path / "data", train=64, test=16))
    common = ["--dataset", "mnist", "--data-dir", data, "--logdir", str(tmp_path / "logs"), "--verbose", "0"]
    code, err = called(gao_swin, common + ["--model", "vit_mnist_patch4"], capsys)
    assert code == 1 and err.startswith("error: unknown model name 'vit_mnist_patch4'. Did you mean vit_mnist_patch4")
    code, err = called(gao_swin, common + ["--batch-size", "8", "--accum", "16"], capsys)
    assert code == 1 and err.startswith("error: accum=16 is larger than the batch size 8") and "--accum" in err
    assert not (tmp_path / "logs").exists()  # both stopped before the log root was made
    missing = tmp_path / "no.safetensors"
    code, err = called(load_recipe("finetune").main, common + ["--checkpoint", f"vit_tiny_patch16_224={missing}"],
                       capsys)
    assert code == 1 and err == f"error: checkpoint '{missing}' does not exist.\n"


def test_damaged_data_names_the_file(tmp_path, capsys):
    data = tiny_mnist(tmp_path / "data", train=64, test=16)
    images = data / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:100])
    code, err = called(load_recipe("gao_swin").main, TINY[:4] + ["--epochs", "1", "--batch-size", "16", "--data-dir",
                       str(data), "--logdir", str(tmp_path / "logs"), "--verbose", "0", "--no-jit"], capsys)
    assert code == 1 and err.startswith(f"error: {images} is not a readable gzip file") and "Download it again" in err


def test_only_user_errors_lose_their_traceback(capsys):
    for error in (DataError("no data"), UsageError("--flag: bad")):
        assert called(raising(error), [], capsys) == (1, f"error: {error}\n")
    # Bugs keep their traceback: an error type tfvit does not raise for users, or a ValueError that no raise
    # statement of tfvit's or the recipe's code made (from another library, or numpy's inside a call from it).
    with pytest.raises(ZeroDivisionError):
        run_recipe(lambda argv: 1 / 0, [])
    with pytest.raises(json.JSONDecodeError):
        run_recipe(lambda argv: json.loads("{"), [])
    with pytest.raises(ValueError, match="reshape"):
        run_recipe(lambda argv: np.zeros(3).reshape(2, 2), [])
    with pytest.raises(DataError):  # --debug: the traceback, as raised
        run_recipe(raising(DataError("no data")), ["--debug"])


def test_file_errors_are_the_users_for_the_paths_they_gave(tmp_path, capsys):
    mine = tmp_path / "mine"
    cli._given_path(str(mine))
    denied = PermissionError(13, "Permission denied", str(mine / "run" / "history.csv"))
    assert called(raising(denied), [], capsys) == (
        1, f"error: {mine / 'run' / 'history.csv'}: Permission denied\n")
    elsewhere = FileNotFoundError(2, "No such file or directory", str(tmp_path / "not-given" / "x"))
    with pytest.raises(FileNotFoundError):
        run_recipe(raising(elsewhere), [])


def test_ctrl_c_outside_a_run_is_one_word_and_in_a_run_one_line(capsys):
    assert called(raising(KeyboardInterrupt()), [], capsys) == (130, "interrupted\n")
    assert called(raising(TrainingInterrupted("r", 3, 10)), [], capsys) == (
        130, "interrupted in epoch 4/10 of r; epochs 1-3 are saved; run the same command to continue\n")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(raising(KeyboardInterrupt()), ["--debug"])


def test_prepare_logdir_creates_the_folder_or_says_why_it_cannot(tmp_path):
    assert prepare_logdir(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b") and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match=r"^--logdir '.*/f' is a file, not a folder"):
        prepare_logdir(str(tmp_path / "f"))
    with pytest.raises(UsageError, match=r"^--logdir '.*/f/sub' cannot be used: part of the path is a file"):
        prepare_logdir(str(tmp_path / "f" / "sub"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes in any folder")
def test_prepare_logdir_refuses_a_folder_it_cannot_write(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(UsageError, match=r"^--logdir '.*locked' cannot be used: Permission denied"):
            prepare_logdir(str(locked))
    finally:
        locked.chmod(0o700)


def test_a_non_utf8_logdir_stops_before_training_naming_the_flag(tmp_path, capsys):
    logdir = os.fsdecode(bytes(tmp_path) + b"/logs-\xff")  # as Python gives such a command-line argument
    data = str(tiny_mnist(tmp_path / "data", train=64, test=16))
    code, err = called(load_recipe("gao_swin").main, TINY[:4] + ["--data-dir", data, "--logdir", logdir,
                                                                 "--epochs", "1", "--verbose", "0"], capsys)
    assert code == 1 and err.startswith(f"error: --logdir {logdir!r} is not a UTF-8 path") and "Traceback" not in err
    assert not os.path.exists(logdir)


def test_sigterm_stops_a_run_as_ctrl_c_does_saying_what_is_saved(tmp_path, capsys):
    # A scheduler's or kill's SIGTERM in epoch 2 of 3: the same line as Ctrl-C, "terminated (SIGTERM)", exit 143.
    import keras

    from tfvit.training.resume import fit_resumable

    class TerminateInEpoch2(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    def main(argv):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((np.ones((8, 4), "float32"), np.zeros(8, "int64"))).batch(4)
        fit_resumable(model, lambda epoch: data, 3, str(tmp_path / "resume"), 2, callbacks=[TerminateInEpoch2()],
                      name="r", verbose=0)

    previous = signal.getsignal(signal.SIGTERM)
    assert called(main, [], capsys) == (
        143, "terminated (SIGTERM) in epoch 2/3 of r; epoch 1 is saved; run the same command to continue\n")
    assert resume_epoch(tmp_path / "resume") == 1
    assert signal.getsignal(signal.SIGTERM) is previous  # the recipe's handler does not outlive it
