import dataclasses

import pytest

import tfvit
from tfvit.experiments import RunConfig, finetune


def test_study_models_are_registry_models():
    assert set(finetune.VIT_MODELS + finetune.SWIN_MODELS) <= set(tfvit.list_models())
    assert [finetune.model_size(m) for m in finetune.VIT_MODELS] == ["tiny", "base", "large"]


def test_plan_labels_each_run_with_how_it_starts():
    base = RunConfig(dataset="cifar10", model="", batch_size=64)
    runs = finetune.plan(base, ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"], ["partial", "full"],
                         {"vit_tiny_patch16_224": "/ckpt/vit_tiny.safetensors"})
    assert [(r.model, r.finetune, r.pretrained) for r in runs] == [
        ("vit_tiny_patch16_224", "partial", "/ckpt/vit_tiny.safetensors"),
        ("vit_tiny_patch16_224", "full", "/ckpt/vit_tiny.safetensors"),
        ("swin_tiny_patch4_window7_224", "partial", ""),
        ("swin_tiny_patch4_window7_224", "full", ""),
    ]
    assert runs[0].group == "vit_tiny_patch16_224 partial (pretrained (vit_tiny.safetensors))"
    assert runs[2].group == "swin_tiny_patch4_window7_224 partial (from scratch)"
    assert len({r.name for r in runs}) == 4  # four run directories
    with pytest.raises(ValueError, match="not among the models"):
        finetune.plan(base, ["vit_tiny_patch16_224"], ["full"], {"swin_tiny_patch4_window7_224": "x.safetensors"})
    with pytest.raises(ValueError, match="'partial', 'full' or 'head'"):
        finetune.plan(base, ["vit_tiny_patch16_224"], ["frozen"])


def test_study_table_puts_the_published_accuracy_beside_ours():
    def result(model, mode):
        config = dataclasses.asdict(RunConfig(dataset="cifar10", model=model, batch_size=64, finetune=mode))
        return {"config": config, "params": 5.5e6, "trainable_params": 2.0e6, "test_accuracy": 0.5,
                "time_per_epoch": 10.0}

    table = finetune.study_table([result("vit_base_patch32_224", "partial"), result("swin_base_patch4_window7_224",
                                                                                  "full")])
    rows = table.splitlines()[2:]
    assert rows[0].endswith("| 95.69% |")  # the study's ViT-Base/32 partial
    assert rows[1].endswith("| 94.52% |")  # its Swin-Base full
    assert "| from scratch |" in rows[0]
