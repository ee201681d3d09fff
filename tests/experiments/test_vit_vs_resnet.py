import dataclasses

import pytest

import tfvit
from tfvit.experiments import RunConfig
from tfvit.experiments import vit_vs_resnet as study


def test_problem1_models_have_the_study_shapes():
    assert set(study.PROBLEM1.values()) <= set(tfvit.list_models())
    for label, name in study.PROBLEM1.items():
        if label.startswith("ViT"):
            depth, heads, width = (int(x) for x in label[5:-1].replace("L", "").replace("H", "").split("-"))
            _, _, config = tfvit.models.model_config(name)
            assert (config["depth"], config["num_heads"], config["embed_dim"]) == (depth, heads, width)


def test_problem2_leaves_out_pretrained_arms_without_a_checkpoint():
    base = RunConfig(dataset="cifar100", model="", batch_size=32)
    runs, skipped = study.plan_problem2(base, ["Swin-Tiny", "Swin-Small"], checkpoints={"Swin-Tiny": "t.safetensors"})
    assert [(r.group, r.finetune, r.pretrained) for r in runs] == [
        ("Swin-Tiny head", "head", "t.safetensors"), ("Swin-Tiny full", "full", "t.safetensors"),
        ("Swin-Tiny scratch", "full", ""), ("Swin-Small scratch", "full", ""),
    ]
    assert [s.split(":")[0] for s in skipped] == ["Swin-Small head", "Swin-Small full"]
    with pytest.raises(ValueError, match="unknown problem-2 models"):
        study.plan_problem2(base, ["Swin-Base"])
    with pytest.raises(ValueError, match="arms"):
        study.plan_problem2(base, arms=["probe"])


def test_tables_carry_the_study_figures():
    config = dataclasses.asdict(RunConfig(dataset="cifar10", model="resnet18_cifar", batch_size=128))
    result = {"config": config, "group": "ResNet-18", "params": 11.17e6, "macs": 556e6, "test_accuracy": 0.7,
              "time_per_epoch": 30.0, "trainable_params": 11.17e6}
    assert study.problem1_table([result]).splitlines()[2] == (
        "| ResNet-18 | 11.17 | 556 | 70.00 | 30.0 | 11.2, 77.3, 558, 21 |")
    # Our "full" arm ran what the study labelled "From Scratch" (its log shows the checkpoint loaded).
    config2 = dataclasses.asdict(RunConfig(dataset="cifar100", model="swin_tiny_patch4_window7_224", batch_size=32,
                                           pretrained="swin_t.safetensors"))
    row = study.problem2_table([{**result, "config": config2, "group": "Swin-Tiny full"}]).splitlines()[2]
    assert row.endswith("| (From Scratch) 2218, 85.35 |")
    assert "pretrained (swin_t.safetensors)" in row
