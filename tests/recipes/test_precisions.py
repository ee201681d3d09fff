"""Every recipe runs end to end in every precision policy, with and without XLA, on this CPU; and in what
``device_defaults`` chooses for a GPU (compute capability 7.5: mixed_float16 with loss scaling and XLA; 8.0:
mixed_bfloat16 and XLA), forced here, so that a GPU user's first command is not the first time its code path runs.

float32 without XLA is what the other recipe tests run; this CPU's own default, whichever it is, runs in
test_gao_swin.py's default-flags test. The whole grid (4 recipes x 5 settings, about 5 minutes on 2 cores) runs
with ``TFVIT_TEST_ALL_PRECISIONS=1``; by default each recipe runs in one setting, so that each setting runs at
least once and the GPU defaults with the paths they stress most: float16 loss scaling under XLA with accumulation
(gao_swin), bfloat16 under XLA with the study models (vit_vs_resnet); float16 without XLA with Performer's feature
exponentials and with a partly frozen fine-tuning and its saliency figure (finetune).
"""

import json
import os

import numpy as np
import pytest

from tests.recipes.loading import load_recipe
from tfvit.training import device_defaults

SMALL = ["--epochs", "1", "--batch-size", "16", "--limit-train", "32", "--limit-test", "16", "--verbose", "0"]
# The smallest run of each recipe that still goes through its own steps (accumulation, a study's table, a
# checkpoint-less fine-tuning with its saliency figure).
RECIPES = {
    "gao_swin": (["--dataset", "mnist", "--model", "vit_mnist_patch4_28", "--accum", "2"], "gao_swin/mnist"),
    "performer_study": (["--dataset", "mnist", "--models", "performer_softmax_16"], "performer_study/mnist"),
    "vit_vs_resnet": (["--problem", "1", "--models", "ViT (2L-2H-128)"], "vit_vs_resnet/problem1_cifar10"),
    # A quick run's --limit-test bounds the saliency figure's images too (it explained 6 whatever the limit).
    "finetune": (["--models", "vit_cifar_patch4_32", "--modes", "partial", "--saliency-images", "6", "--limit-test",
                  "2"], "finetune/cifar10"),
}
# (flags, forced GPU compute capability or None, the precision and XLA choice the runs must record)
SETTINGS = {
    "mixed_float16": (["--precision", "mixed_float16", "--no-jit"], None, ("mixed_float16", False)),
    "float32-xla": (["--precision", "float32", "--jit"], None, ("float32", True)),
    "mixed_bfloat16": (["--precision", "mixed_bfloat16", "--no-jit"], None, ("mixed_bfloat16", False)),
    "gpu-cc7.5-default": ([], (7, 5), ("mixed_float16", True)),
    "gpu-cc8.0-default": ([], (8, 0), ("mixed_bfloat16", True)),
}


DEFAULT_GRID = {("gao_swin", "gpu-cc7.5-default"), ("finetune", "mixed_float16"),
                ("vit_vs_resnet", "gpu-cc8.0-default"), ("performer_study", "mixed_float16"),
                ("performer_study", "mixed_bfloat16"), ("vit_vs_resnet", "float32-xla")}
GRID = [pytest.param(recipe, setting, marks=[] if (recipe, setting) in DEFAULT_GRID else pytest.mark.skipif(
            not os.environ.get("TFVIT_TEST_ALL_PRECISIONS"), reason="the whole grid: TFVIT_TEST_ALL_PRECISIONS=1"))
        for recipe in sorted(RECIPES) for setting in sorted(SETTINGS)]


@pytest.mark.parametrize("recipe,setting", GRID)
def test_every_recipe_runs_in_every_precision_and_the_gpu_defaults(recipe, setting, tmp_path, owner_data,
                                                                   monkeypatch, capsys):
    flags, capability, expected = SETTINGS[setting]
    if capability is not None:
        # What training_defaults() sees on a GPU of that compute capability; the recipe's flags are left at auto.
        monkeypatch.setattr(device_defaults, "_gpu_compute_capability", lambda: capability)
        assert (device_defaults.training_defaults().precision,
                device_defaults.training_defaults().jit_compile) == expected
    args, out = RECIPES[recipe]
    load_recipe(recipe).main(SMALL + args + flags + ["--data-dir", str(owner_data), "--logdir", str(tmp_path)])
    (result,) = json.loads((tmp_path / out / "results.json").read_text())
    assert (result["config"]["precision"], result["config"]["jit"]) == expected
    assert result["status"] == "ok" and result["updates"] >= 1
    assert np.isfinite([result["test_loss"], result["test_accuracy"], result["history"]["loss"][0]]).all()
    hparams = json.loads((tmp_path / out / result["folder"] / "hparams.json").read_text())
    assert hparams["weight_decay"] == 0.05  # AdamW's default, read through mixed_float16's LossScaleOptimizer too
    if recipe == "finetune":
        assert "saliency: the first 2 test images (--limit-test 2), not 6" in capsys.readouterr().out
        assert (tmp_path / out / "saliency.png").read_bytes()[:4] == b"\x89PNG"
