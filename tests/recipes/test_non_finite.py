"""A recipe whose run diverges stops in the batch whose loss turned NaN: ``run_recipe`` prints one paragraph
``error: ...`` naming the epoch and step and exits with 1, and no result (result.json, results.json) is written
with NaN in it. The recipe runs in this process on a tiny MNIST in the owners' IDX format (tests/owner_files.py)."""

import glob

import pytest

from tests.owner_files import write_idx_dataset
from tests.recipes.loading import load_recipe
from tfvit.experiments.cli import run_recipe

# The recipe's own accumulation (4 micro-batches), on a tiny ViT; a rate of a million diverges in the first epoch.
TINY = ["--dataset", "mnist", "--model", "vit_mnist_patch4_28", "--batch-size", "64", "--limit-train", "256",
        "--limit-test", "64", "--precision", "float32", "--no-jit", "--epochs", "2", "--verbose", "0"]


def test_a_diverging_run_ends_in_one_error_paragraph_and_writes_no_result(tmp_path, capsys):
    data = write_idx_dataset(tmp_path / "data", "mnist", count={"train": 256, "test": 64})
    logdir = tmp_path / "logs"
    with pytest.raises(SystemExit) as stopped:
        run_recipe(load_recipe("gao_swin").main, TINY + ["--lr", "1e6", "--data-dir", str(data), "--logdir",
                                                         str(logdir)])
    err = capsys.readouterr().err
    assert stopped.value.code == 1, err
    assert err.startswith("error: the training loss is NaN at epoch 1/2, step "), err
    assert "/4 of accumulation/b64-acc4-lr1e6-e2: the run diverged and was stopped." in err  # the run's folder
    assert "a learning rate (now " in err
    assert "No epoch had finished: nothing of this run was saved." in err
    assert "Traceback" not in err and err.count("error: ") == 1 and "\n" not in err.strip()  # one paragraph
    assert not glob.glob(str(logdir / "**" / "result*.json"), recursive=True)
    assert not glob.glob(str(logdir / "**" / "model.weights.h5"), recursive=True)
