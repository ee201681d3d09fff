"""One process per run folder, and a history.csv that survives a torn row."""

import csv
import dataclasses
import multiprocessing
import os

import pytest

from tfvit.experiments.history import read_history, repair_history
from tfvit.experiments.run_lock import RunInUse, run_lock


def _hold(folder, ready, release):
    with run_lock(folder):
        ready.set()
        release.wait(30)


def test_a_second_process_on_a_locked_run_stops_at_once_naming_the_first(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunInUse, match=f"run accumulation/b8 is in use by pid {holder.pid} "):
            with run_lock(tmp_path, "accumulation/b8"):
                pass
    finally:
        release.set()
        holder.join(30)
    with run_lock(tmp_path):  # released when its holder ended
        pass


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(60)
    holder.kill()
    holder.join(30)
    with run_lock(tmp_path):
        pass


def write(path, text):
    path.write_text(text)
    return path.parent


HEADER = "epoch,loss,val_loss\n"


def test_torn_rows_and_repeated_headers_are_left_out(tmp_path):
    run_dir = write(tmp_path / "history.csv", HEADER + "0,2.5,2.4\n1,2.0,1.9\n" + HEADER + "2,1.5,1.4\n3,1.")
    assert read_history(run_dir) == {"epoch": [0.0, 1.0, 2.0], "loss": [2.5, 2.0, 1.5], "val_loss": [2.4, 1.9, 1.4]}
    # Epoch 1 written twice (killed after the row, before the state): the later row wins.
    run_dir = write(tmp_path / "history.csv", HEADER + "0,2.5,2.4\n1,9.0,9.0\n1,2.0,1.9\n")
    assert read_history(run_dir)["loss"] == [2.5, 2.0]


def test_repair_keeps_the_whole_rows_of_the_saved_epochs(tmp_path):
    run_dir = write(tmp_path / "history.csv", HEADER + "0,2.5,2.4\n1,2.0,1.9\n2,1.5,1.4\n3,1.")
    repair_history(run_dir, 2)
    with open(run_dir / "history.csv") as f:
        assert list(csv.reader(f)) == [["epoch", "loss", "val_loss"], ["0", "2.5", "2.4"], ["1", "2.0", "1.9"]]
    assert not [n for n in os.listdir(run_dir) if n != "history.csv"]  # no temporary file left
    repair_history(run_dir, 0)
    assert not (run_dir / "history.csv").exists()  # nothing saved: the next epoch writes a new header
    write(tmp_path / "history.csv", "\0\0\0")
    repair_history(run_dir, 3)
    assert not (run_dir / "history.csv").exists() and read_history(run_dir) == {}


def test_a_run_in_use_stops_before_anything_is_loaded(tmp_path):
    from tfvit.experiments import RunConfig
    from tfvit.experiments.run import run
    from tfvit.experiments.run_folders import run_folder

    config = RunConfig(dataset="mnist", model="vit_mnist_patch4_28", batch_size=32, epochs=1, precision="float32",
                       jit=False, data_dir=str(tmp_path / "no-data-here"), group="arm")
    folder = run_folder(config, str(tmp_path), create=True)
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(folder, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        # No data exist: the lock is what stops it, before the data are looked for.
        with pytest.raises(RunInUse, match=f"run arm/b32-acc1-lr1e-3-e1 is in use by pid {holder.pid} "):
            run(config, str(tmp_path), verbose=0)
    finally:
        release.set()
        holder.join(30)


def test_regularisation_flags_a_model_does_not_have_are_refused_not_ignored():
    from tfvit.experiments import RunConfig
    from tfvit.experiments.run import build_model

    resnet = RunConfig(dataset="cifar10", model="resnet18_cifar", batch_size=8, precision="float32", jit=False)
    with pytest.raises(ValueError, match=r"--drop-path 0.1 does not apply to resnet18_cifar: it has no drop_path_rate"):
        build_model(dataclasses.replace(resnet, drop_path=0.1))
    with pytest.raises(ValueError, match=r"--dropout 0.2 does not apply to resnet18_cifar"):
        build_model(dataclasses.replace(resnet, dropout=0.2))
    vit, _ = build_model(dataclasses.replace(resnet, model="vit_cifar_patch4_32", drop_path=0.05))
    assert vit.get_config()["drop_path_rate"] == 0.05
