import dataclasses

import pytest

import tfvit
from tfvit.experiments import RunConfig, performer


def test_every_study_model_maps_to_a_registry_model():
    for dataset in ("mnist", "cifar10", "fashion_mnist"):
        for study_model in performer.DEFAULT_MODELS:
            assert performer.registry_name(study_model, dataset) in tfvit.list_models()
    assert performer.registry_name("swin", "cifar10") == "swin_cifar_patch2_window4_32"
    assert performer.registry_name("global", "mnist") == "vit_mnist_patch4_28"
    with pytest.raises(ValueError, match="unknown study model"):
        performer.registry_name("performer_relu_12", "mnist")


def test_plan_uses_the_study_epochs_for_swin():
    base = RunConfig(dataset="mnist", model="", batch_size=128, epochs=60)
    runs = performer.plan(base, ["performer_relu_16", "swin"], swin_epochs=50)
    assert [(r.group, r.epochs) for r in runs] == [("performer_relu_16", 60), ("swin", 50)]


def test_study_table_puts_the_published_figures_beside_ours():
    config = dataclasses.asdict(RunConfig(dataset="mnist", model="vit_mnist_patch4_28", batch_size=128))
    result = {"config": config, "group": "global", "train_accuracy": 0.95, "test_accuracy": 0.96, "test_loss": 0.12,
              "epochs_run": 3, "time_per_epoch": 12.3, "time_per_step": 0.0456}
    table = performer.study_table([result])
    assert "| global | 0.9500 | 0.9600 | 0.1200 | 3 | 12.3s | 46ms | 0.9872 / 0.9898, 0.0278, 8s, 32ms |" in table
