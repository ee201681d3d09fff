"""Run folders ``<arm>/<short config>``: readable, found again by the same configuration, never shared by two."""

import dataclasses
import json
import os

from tfvit.experiments import RunConfig
from tfvit.experiments.run_folders import CONFIG_FILE, arm_folder, run_folder, run_label, short_config


def config(**fields):
    base = dict(dataset="mnist", model="vit_mnist_patch4_28", batch_size=128, accum=4, epochs=10,
                learning_rate=1e-3, group="accumulation", precision="float32", jit=False)
    return RunConfig(**dict(base, **fields))


def test_the_folder_is_the_arm_then_batch_accumulation_rate_and_epochs(tmp_path):
    assert run_label(config(), tmp_path) == "accumulation/b128-acc4-lr1e-3-e10"
    assert short_config(config(learning_rate=2.5e-4, accum=1, batch_size=32, epochs=3)) == "b32-acc1-lr2.5e-4-e3"
    assert short_config(config(learning_rate=0.1)) == "b128-acc4-lr1e-1-e10"
    # The tables' labels become folder names; a configuration without one is filed under its model.
    assert arm_folder(config(group="ViT (2L-2H-128)")) == "vit_2l-2h-128"
    assert arm_folder(config(group="vit_tiny_patch16_224 partial (pretrained (vit.safetensors))")) == \
        "vit_tiny_patch16_224_partial_pretrained_vit.safetensors"
    assert arm_folder(config(group="")) == "vit_mnist_patch4_28"


def test_the_same_configuration_finds_its_folder_and_another_takes_the_next_number(tmp_path):
    first = run_folder(config(), tmp_path, create=True)
    record = json.loads(open(os.path.join(first, CONFIG_FILE)).read())
    assert record == {"run_id": config().name, "identity": json.loads(json.dumps(config().identity()))}
    # Where things are read from and what is kept are not part of the identity: the same folder.
    assert run_folder(config(data_dir="/elsewhere", save_best=True), tmp_path) == first
    # Another seed or limit shares the readable parts: -2, -3 in the order they were started.
    other_seed = run_folder(config(seed=1), tmp_path, create=True)
    other_limit = run_folder(config(limit_train=100), tmp_path, create=True)
    assert [os.path.relpath(p, tmp_path) for p in (other_seed, other_limit)] == [
        "accumulation/b128-acc4-lr1e-3-e10-2", "accumulation/b128-acc4-lr1e-3-e10-3"]
    assert run_folder(config(seed=1), tmp_path) == other_seed and run_folder(config(), tmp_path) == first
    # Without create nothing is made: the name the run would take.
    assert run_label(config(seed=2), tmp_path) == "accumulation/b128-acc4-lr1e-3-e10-4"
    assert not os.path.exists(tmp_path / "accumulation" / "b128-acc4-lr1e-3-e10-4")


def test_a_folder_without_a_readable_record_is_never_taken_over(tmp_path):
    squatter = tmp_path / "accumulation" / "b128-acc4-lr1e-3-e10"
    os.makedirs(squatter)
    (squatter / CONFIG_FILE).write_text("{torn")
    assert run_label(config(), tmp_path) == "accumulation/b128-acc4-lr1e-3-e10-2"
    assert dataclasses.replace(config(), group="baseline-effective").name == config().name  # the arm is a label
