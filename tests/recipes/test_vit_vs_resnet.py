"""recipes/vit_vs_resnet.py end to end on a few images of the generated owners'-format CIFAR-10."""

import csv

import pytest

from tests.recipes.loading import load_recipe


def test_problem1_table_has_params_macs_accuracy_and_time(tmp_path, owner_data):
    load_recipe("vit_vs_resnet").main([
        "--problem", "1", "--models", "ResNet-18,ViT (2L-2H-128)", "--data-dir", str(owner_data), "--epochs", "1",
        "--batch-size", "32", "--limit-train", "64", "--limit-test", "32", "--logdir", str(tmp_path), "--verbose", "0",
    ])
    out = tmp_path / "vit_vs_resnet" / "problem1_cifar10"
    rows = [line.split("|")[1:-1] for line in (out / "study_table.md").read_text().splitlines()[2:] if line]
    assert [r[0].strip() for r in rows] == ["ResNet-18", "ViT (2L-2H-128)"]
    # Parameters and MACs are the models' own counts (ResNet-18 CIFAR: 11.17M, 555M MACs), beside the study's.
    assert [r[1].strip() for r in rows] == ["11.18", "0.41"]
    assert rows[0][2].strip() == "555" and rows[0][5].strip() == "11.2, 77.3, 558, 21"
    for r in rows:
        assert 0.0 <= float(r[3]) <= 100.0 and float(r[4]) > 0
    with open(out / "results.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["resnet18_cifar", "vit_cifar_patch4_32_2l2h128"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_problem2_without_checkpoints_says_which_arms_it_cannot_run(tmp_path, capsys):
    # The pretrained arms need ImageNet weights; asked for them alone, the recipe stops before training.
    with pytest.raises(SystemExit, match="nothing to run: Swin-Tiny head: needs ImageNet weights: --pretrained, or --checkpoint Swin-Tiny="):
        load_recipe("vit_vs_resnet").main(["--problem", "2", "--models", "Swin-Tiny", "--arms", "head,full",
                                           "--logdir", str(tmp_path)])
    assert "not run: Swin-Tiny full: needs ImageNet weights: --pretrained, or --checkpoint Swin-Tiny=" in capsys.readouterr().out
    assert not (tmp_path / "vit_vs_resnet").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recipe("vit_vs_resnet").main(["--problem", "2",
                                           "--checkpoint", f"Swin-Tiny={tmp_path / 'missing.safetensors'}"])


def test_checkpoints_and_arms_are_for_problem_2(tmp_path):
    from tfvit.experiments.cli import UsageError

    for flags in (["--pretrained"], ["--checkpoint", "ResNet-18=hf-hub:org/name"]):
        with pytest.raises(UsageError, match="are for --problem 2; problem 1 trains every model from scratch"):
            load_recipe("vit_vs_resnet").main(["--problem", "1", *flags, "--logdir", str(tmp_path)])
    # Problem 1 has no arms: --arms was silently ignored there.
    with pytest.raises(UsageError, match="^--arms is for --problem 2"):
        load_recipe("vit_vs_resnet").main(["--problem", "1", "--arms", "head", "--logdir", str(tmp_path)])
    assert not (tmp_path / "vit_vs_resnet").exists()


def test_accumulation_over_resnet_says_at_run_time_that_it_is_not_exact(tmp_path, owner_data, capsys, monkeypatch):
    # ResNet-18's BatchNorm normalises each micro-batch by itself: --accum is not the batch's update there.
    # (Stopped as training would begin: the warning comes when the run builds its trainer.)
    import sys

    from tests.recipes.test_user_errors import called

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["tfvit.experiments.run"], "fit_resumable", stop)
    code, err = called(load_recipe("vit_vs_resnet").main, [
        "--problem", "1", "--models", "ResNet-18", "--accum", "2", "--data-dir", str(owner_data), "--epochs", "1",
        "--batch-size", "16", "--limit-train", "16", "--limit-test", "16", "--logdir", str(tmp_path), "--verbose", "0",
    ], capsys)
    assert code == 130
    assert "warning: GradientAccumulationModel(accum=2): accumulation over model 'resnet18_cifar' is not exact" in err
    assert "BatchNormalization" in err and "Traceback" not in err
