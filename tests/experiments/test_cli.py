import argparse
import dataclasses

import pytest

from tests.recipes.loading import load_recipe
from tfvit.experiments import RunConfig
from tfvit.experiments.cli import add_run_arguments, checkpoint_pair, existing_checkpoints
from tfvit.experiments.config import FLAG_FIELDS
from tfvit.training import training_defaults

RECIPES = {"gao_swin": [], "performer_study": [], "finetune": [], "vit_vs_resnet": ["--problem", "1"]}


def test_checkpoint_pairs_need_a_model_and_a_path(tmp_path):
    assert checkpoint_pair("Swin-Tiny = a/b.safetensors") == ("Swin-Tiny", "a/b.safetensors")
    for bad in ("model.safetensors", "=x.safetensors", "vit="):
        with pytest.raises(argparse.ArgumentTypeError, match="MODEL=PATH"):
            checkpoint_pair(bad)
    present = tmp_path / "m.safetensors"
    present.write_bytes(b"")
    assert existing_checkpoints([("vit", str(present))]) == {"vit": str(present)}
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        existing_checkpoints([("vit", str(present)), ("swin", str(tmp_path / "missing.safetensors"))])


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
    assert dropped == {"logdir", "verbose"}  # where results go and how much is printed: not the run itself


def test_the_data_folder_is_not_part_of_a_runs_identity():
    here = RunConfig(dataset="mnist", model="m", batch_size=8, precision="float32", jit=False, data_dir="a")
    there = dataclasses.replace(here, data_dir="/elsewhere")
    assert here.name == there.name and here.identity() == there.identity()
    assert here.name != dataclasses.replace(here, seed=1).name
