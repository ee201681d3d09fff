"""The forms of ``augment`` that the README documents (issue 16): one name, a list of names, or a comma-separated
string such as the recipes' ``--augment crop_flip,randaugment`` (RunConfig.augment, passed to tfvit.data.load as
it is); an unknown name is named with the one it resembles."""

import argparse
import json

import numpy as np
import pytest

from tfvit.data import augment, load


@pytest.mark.parametrize("given, names", [
    ("crop_flip,mixup", ("crop_flip", "mixup")),
    ("crop_flip, randaugment ,cutmix", ("crop_flip", "randaugment", "cutmix")),
    ("mixup,mixup", ("mixup",)),
    ("randaugment", ("randaugment",)),
    (["crop_flip", "randaugment"], ("crop_flip", "randaugment")),
    (("cutmix",), ("cutmix",)),
    ("", ()),  # the recipes' --augment default: none
    (None, ()),
])
def test_augment_takes_a_name_a_list_or_a_comma_separated_string(given, names):
    assert augment.parse_augment(given) == names


@pytest.mark.parametrize("given, message", [
    ("crop_flip,mixpu", r"^augment: unknown name\(s\) 'mixpu'; choose from crop_flip, randaugment, mixup, cutmix "
                        r"\(augment='crop_flip,mixpu'\)\. Did you mean 'mixup'\?$"),
    ("crop_flip,,mixup", r"augment: empty name in 'crop_flip,,mixup'"),
    (["crop_flip,mixup"], r"augment: unknown name\(s\) 'crop_flip,mixup'.* A list holds one name per item; or give "
                          r"all the names as one comma-separated string"),
    (3, r"augment must be None, a name or a list of names \(or one comma-separated string of names\)"),
])
def test_bad_augment_forms_say_what_is_wrong(given, message):
    with pytest.raises(ValueError, match=message):
        augment.parse_augment(given)


def test_load_takes_a_comma_separated_string(owner_data):
    options = dict(data_dir=owner_data, limit=8, shuffle=False, normalize=False, seed=3)
    x, y = next(iter(load("cifar10", "train", 8, augment="crop_flip,mixup", **options)))
    x_list, y_list = next(iter(load("cifar10", "train", 8, augment=["crop_flip", "mixup"], **options)))
    assert y.shape == (8, 10)  # one-hot by default, as with mixup given any other way
    np.testing.assert_array_equal(x.numpy(), x_list.numpy())
    np.testing.assert_array_equal(y.numpy(), y_list.numpy())


def test_the_recipe_flag_augment_crop_flip_randaugment_runs_end_to_end(owner_data, tmp_path):
    from tfvit.experiments import RunConfig
    from tfvit.experiments.cli import add_run_arguments
    from tfvit.experiments.run import run

    args = add_run_arguments(argparse.ArgumentParser()).parse_args([
        "--augment", "crop_flip,randaugment", "--epochs", "1", "--batch-size", "8", "--limit-train", "16",
        "--limit-test", "8", "--data-dir", str(owner_data), "--precision", "float32", "--no-jit"])
    config = RunConfig.from_args(args, model="vit_mnist_patch4_28", dataset="mnist")
    assert config.augment == "crop_flip,randaugment"
    result = run(config, logdir=str(tmp_path), verbose=0)
    assert result["epochs_run"] == 1 and np.isfinite(result["test_loss"])
    assert json.loads(json.dumps(result["config"]))["augment"] == "crop_flip,randaugment"
