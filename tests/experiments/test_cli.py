import argparse
import dataclasses
import importlib
import json
import os

import numpy as np
import pytest

from tests.recipes.loading import load_recipe
from tfvit.experiments import RunConfig
from tfvit.experiments.cli import UsageError, add_run_arguments, checkpoint_pair, resolve_checkpoints
from tfvit.experiments.config import FLAG_FIELDS
from tfvit.experiments.run_folders import run_folder
from tfvit.training.resume_state import write_state
from tfvit.training import training_defaults
from tfvit.training.resume import TrainingInterrupted, resume_epoch

# The module (tfvit.experiments.run is also the name of its function ``run``, which the package exports).
run_module = importlib.import_module("tfvit.experiments.run")

RECIPES = {"gao_swin": [], "performer_study": [], "finetune": [], "vit_vs_resnet": ["--problem", "1"]}


def test_checkpoint_pairs_need_a_model_and_a_path_or_a_hub_repository(tmp_path):
    assert checkpoint_pair("Swin-Tiny = a/b.safetensors") == ("Swin-Tiny", "a/b.safetensors")
    assert checkpoint_pair("vit=hf-hub:org/name@v1") == ("vit", "hf-hub:org/name@v1")
    for bad in ("model.safetensors", "=x.safetensors", "vit="):
        with pytest.raises(argparse.ArgumentTypeError, match="MODEL=PATH"):
            checkpoint_pair(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="expected hf-hub:ORG/NAME"):
        checkpoint_pair("vit=hf-hub:no-org")
    present = tmp_path / "m.safetensors"
    present.write_bytes(b"")
    assert resolve_checkpoints([("vit", str(present))]) == {"vit": str(present)}
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        resolve_checkpoints([("vit", str(present)), ("swin", str(tmp_path / "missing.safetensors"))])


def test_pretrained_gives_each_model_its_registry_checkpoint_unless_one_is_named(tmp_path, monkeypatch):
    from tfvit.experiments import cli
    from tfvit.models import pretrained_source

    fetched = []
    monkeypatch.setattr(cli, "hub_checkpoint", fetched.append)  # no hub here: record what would be fetched
    present = tmp_path / "m.safetensors"
    present.write_bytes(b"")
    names = {"vit": "vit_tiny_patch16_224", "Swin-Tiny": "swin_tiny_patch4_window7_224"}
    got = resolve_checkpoints([("vit", str(present))], names)
    assert got == {"vit": str(present), "Swin-Tiny": pretrained_source("swin_tiny_patch4_window7_224").reference}
    assert fetched == [got["Swin-Tiny"]]  # fetched before any training
    with pytest.raises(UsageError, match="--pretrained: 'vit_cifar_patch4_32' has no public pretrained"):
        resolve_checkpoints([], {"vit_cifar_patch4_32": "vit_cifar_patch4_32"})


def test_every_recipe_gets_the_same_run_flags():
    args = add_run_arguments(argparse.ArgumentParser()).parse_args(["--jit", "--limit-train", "64"])
    assert (args.jit, args.limit_train, args.limit_test, args.precision, args.logdir) == (True, 64, 0, "auto", "logs")
    assert add_run_arguments(argparse.ArgumentParser()).parse_args(["--no-jit"]).jit is False
    assert add_run_arguments(argparse.ArgumentParser()).parse_args([]).jit is None


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_takes_the_run_flags_and_defaults_to_the_device(recipe, capsys):
    parse = load_recipe(recipe).parse
    defaults = training_defaults()
    args = parse(RECIPES[recipe])
    assert (args.precision, args.jit) == ("auto", None)
    config = RunConfig.from_args(args, model="m", dataset="mnist")
    assert (config.precision, config.jit) == (defaults.precision, defaults.jit_compile)
    for flags, expected in ((["--precision", "auto", "--no-jit"], (defaults.precision, False)),
                            (["--precision", "float32", "--jit"], ("float32", True))):
        config = RunConfig.from_args(parse(RECIPES[recipe] + flags), model="m", dataset="mnist")
        assert (config.precision, config.jit) == expected
    config = RunConfig.from_args(parse(RECIPES[recipe] + ["--accum", "2", "--lr", "0.5", "--data-dir", "d"]),
                                 model="m", dataset="mnist")
    assert (config.accum, config.learning_rate, config.data_dir) == (2, 0.5, "d")
    for bad, flag in ((["--accum", "0"], "--accum"), (["--epochs", "0"], "--epochs"), (["--lr", "-1"], "--lr"),
                      (["--batch-size", "x"], "--batch-size"), (["--dropout", "1.5"], "--dropout")):
        with pytest.raises(SystemExit) as stopped:
            parse(RECIPES[recipe] + bad)
        assert stopped.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_every_run_flag_sets_a_field_of_the_configuration():
    """A flag that no field takes would be parsed and then silently ignored."""
    args = add_run_arguments(argparse.ArgumentParser()).parse_args([])
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    dropped = {dest for dest in vars(args) if FLAG_FIELDS.get(dest, dest) not in fields}
    # Where results go, how much is printed and how errors are shown: not the run itself.
    assert dropped == {"logdir", "verbose", "debug"}


def test_the_data_folder_is_not_part_of_a_runs_identity():
    here = RunConfig(dataset="mnist", model="m", batch_size=8, precision="float32", jit=False, data_dir="a")
    there = dataclasses.replace(here, data_dir="/elsewhere")
    assert here.name == there.name and here.identity() == there.identity()
    assert here.name != dataclasses.replace(here, seed=1).name


def _study(tmp_path):
    """Four runs: a (2 epochs), b (4), c (3, one saved: 2 left) and d (finished earlier)."""
    configs = [RunConfig(dataset="mnist", model="m", batch_size=8, epochs=epochs, group=group, precision="float32",
                         jit=False) for group, epochs in (("a", 2), ("b", 4), ("c", 3), ("d", 5))]
    saved, finished = (run_folder(c, tmp_path, create=True) for c in configs[2:])
    write_state(os.path.join(saved, "resume"), 1, [np.zeros(3)], {"callbacks": []})
    with open(os.path.join(finished, "result.json"), "w") as f:
        json.dump({"config": dataclasses.asdict(configs[3])}, f)
    return configs


def test_run_all_estimates_the_time_left_from_the_epochs_it_timed(tmp_path, monkeypatch, capsys):
    configs = _study(tmp_path)
    clock = [0.0]
    monkeypatch.setattr(run_module.time, "perf_counter", lambda: clock[0])

    def fake_run(config, logdir, verbose):  # 30 s per epoch trained, 5 s of building and evaluating
        folder = run_folder(config, logdir, create=True)
        if run_module.finished_result(config, folder) is None:
            clock[0] += 5 + 30 * (config.epochs - resume_epoch(os.path.join(folder, "resume")))
        return {"epochs_run": config.epochs}

    monkeypatch.setattr(run_module, "run", fake_run)
    run_module.run_all(configs, str(tmp_path), verbose=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert lines[0] == "[1/4] a/b8-acc1-lr1e-3-e2"  # nothing timed yet
    # After a: 65 s over 2 epochs; b, c and d have 4 + 2 + 0 epochs to train: 195 s.
    assert lines[1] == "[2/4] b/b8-acc1-lr1e-3-e4 (estimate: about 3 min left in the study)"
    # After b: 190 s over 6 epochs; c has 2 left.
    assert lines[2] == "[3/4] c/b8-acc1-lr1e-3-e3 (estimate: about 63 s left in the study)"
    assert lines[3] == "[4/4] d/b8-acc1-lr1e-3-e5"  # finished earlier: nothing left to estimate

    run_module.run_all(configs, str(tmp_path), verbose=0)
    assert "estimate" not in capsys.readouterr().out
    assert [run_module.duration_text(s) for s in (0.2, 89, 100, 5399, 5400 + 9 * 360)] == [
        "1 s", "89 s", "2 min", "90 min", "2.4 h"]


def test_an_interrupt_in_a_study_says_which_run(tmp_path, monkeypatch):
    configs = _study(tmp_path)

    def fake_run(config, logdir, verbose):
        if config.group == "b":
            raise TrainingInterrupted(config.name, 1, config.epochs)
        return {"epochs_run": config.epochs}

    monkeypatch.setattr(run_module, "run", fake_run)
    with pytest.raises(TrainingInterrupted) as stopped:
        run_module.run_all(configs, str(tmp_path), verbose=0)
    assert stopped.value.study == (2, 4)
    assert str(stopped.value).startswith(f"interrupted in epoch 2/4 of {configs[1].name} (run 2/4 of the study); ")
