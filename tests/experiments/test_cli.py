import argparse

import pytest

from tfvit.experiments.cli import add_run_arguments, checkpoint_pair, existing_checkpoints


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
