"""Each file of a run folder damaged in turn: the rerun says what it found, recovers, and ends with the result and
weights of an undamaged run (tfvit.experiments.run on a tiny ViT and the generated MNIST of ``owner_data``)."""

import os
import shutil

import h5py
import numpy as np
import pytest

from tfvit.experiments import RunConfig
from tfvit.experiments.run import run
from tfvit.experiments.run_folders import run_folder
from tfvit.training.resume import ResumableTraining, TrainingInterrupted

EPOCHS = 3


@pytest.fixture(scope="module")
def runs(owner_data, tmp_path_factory):
    """(config, the finished reference run's result and folder, the logdir of the same run interrupted after
    epoch 2)."""
    config = RunConfig(dataset="mnist", model="vit_mnist_patch4_28", batch_size=32, epochs=EPOCHS, limit_train=64,
                       limit_test=32, precision="float32", jit=False, data_dir=str(owner_data), group="arm")
    root = tmp_path_factory.mktemp("damage")
    reference = run(config, str(root / "reference"), verbose=0)
    save = ResumableTraining.on_epoch_end

    def stop_after_epoch_2(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch + 1 == 2:
            raise KeyboardInterrupt

    ResumableTraining.on_epoch_end = stop_after_epoch_2
    try:
        with pytest.raises(TrainingInterrupted):
            run(config, str(root / "interrupted"), verbose=0)
    finally:
        ResumableTraining.on_epoch_end = save
    return config, reference, run_folder(config, str(root / "reference")), root / "interrupted"


def weights(folder):
    arrays = []
    with h5py.File(os.path.join(folder, "model.weights.h5"), "r") as stored:
        stored.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
    return [value for _, value in sorted(arrays, key=lambda a: a[0])]


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def zero(path):
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(b"\0" * size)


def tear_last_row(path):
    with open(path, "a") as f:
        f.write("2,0.12")  # a kill in the middle of the next row


def zero_every_state(path):
    for name in os.listdir(path):
        zero(os.path.join(path, name, "variables.npz"))


# Damage to files of the interrupted run's folder, several per case (each rerun trains: kept few), and words
# the rerun's stderr must hold. Every way of damaging one state is checked without training in
# tests/training/test_resume_state.py.
DAMAGE = {
    "history.csv torn, newest variables.npz truncated": (
        [("history.csv", tear_last_row), ("resume/epoch-0002/variables.npz", truncate)],
        ["epoch-0002/variables.npz has", "continuing from the state of epoch 1"]),
    "history.csv with two headers, newest state.json empty": (
        [("history.csv", lambda p: open(p, "a").write(open(p).readline())),
         ("resume/epoch-0002/state.json", lambda p: open(p, "w").close())],
        ["epoch-0002/state.json cannot be read"]),
    "every state zeroed": ([("resume", zero_every_state)], ["does not match the checksum", "starts from epoch 1"]),
    "config.json damaged": ([("config.json", zero)], ["config.json cannot be read", "takes another folder"]),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_run_folder_is_recovered_and_ends_as_the_undamaged_run(runs, damage, tmp_path, capsys):
    config, reference, reference_folder, interrupted = runs
    logdir = tmp_path / "logs"
    shutil.copytree(interrupted, logdir)
    folder = run_folder(config, str(logdir))
    spoils, words = DAMAGE[damage]
    for relative, spoil in spoils:
        spoil(os.path.join(folder, relative))
    capsys.readouterr()
    result = run(config, str(logdir), verbose=0)
    said = capsys.readouterr().err
    assert all(w in said for w in words), said
    assert result["test_loss"] == reference["test_loss"]
    assert result["history"]["epoch"] == list(range(EPOCHS))
    assert result["history"]["loss"] == reference["history"]["loss"]
    for a, b in zip(weights(run_folder(config, str(logdir))), weights(reference_folder), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_damaged_result_is_noticed_and_the_run_trained_again_to_the_same_result(runs, tmp_path, capsys):
    config, reference, reference_folder, _ = runs
    logdir = tmp_path / "logs"
    shutil.copytree(os.path.dirname(os.path.dirname(reference_folder)), logdir)
    truncate(os.path.join(run_folder(config, str(logdir)), "result.json"))
    result = run(config, str(logdir), verbose=0)
    assert "result.json is damaged" in capsys.readouterr().err
    assert result["test_loss"] == reference["test_loss"] and result["history"]["loss"] == reference["history"]["loss"]
