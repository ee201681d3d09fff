"""tfvit.training.distribution's checks and its single-process behaviour: names and TF_CONFIG refused with a
message saying what to do, ``--strategy multi_worker`` without a cluster ending a recipe in one paragraph,
and one device leaving data and paths as they are (the multi-process behaviour: tests/recipes/test_distributed.py)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.recipes.loading import load_recipe
from tfvit.training import distribution


def test_an_unknown_strategy_names_the_ones_there_are():
    with pytest.raises(distribution.StrategyError, match="unknown strategy 'mirror'; use one of auto, none, mirrored, "
                                                         "multi_worker"):
        distribution.strategy_for("mirror")


@pytest.mark.parametrize("value, message", [
    (None, "needs the TF_CONFIG environment variable on every worker, e.g. TF_CONFIG="),
    ("{not json", "TF_CONFIG is not a cluster and a task"),
    (json.dumps({"cluster": {"worker": ["a:1"]}}), "TF_CONFIG is not a cluster and a task .KeyError"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
     "task .* is not in its cluster"),
])
def test_tf_config_is_checked_before_joining_a_cluster(monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(distribution.StrategyError, match=message):
        distribution.tf_config()


def test_a_recipe_with_multi_worker_and_no_cluster_stops_with_one_paragraph(monkeypatch, tmp_path, owner_data, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    from tfvit.experiments.cli import run_recipe

    recipe = load_recipe("gao_swin")
    with pytest.raises(SystemExit) as stopped:
        run_recipe(recipe.main, ["--dataset", "mnist", "--data-dir", str(owner_data), "--model", "vit_mnist_patch4_28",
                                 "--epochs", "1", "--limit-train", "64", "--logdir", str(tmp_path),
                                 "--strategy", "multi_worker"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --strategy multi_worker needs the TF_CONFIG environment variable") and \
        "Traceback" not in err
    assert not list(tmp_path.rglob("history.csv"))  # nothing trained


def test_one_device_leaves_the_data_and_the_paths_as_they_are(tmp_path):
    dataset = tf.data.Dataset.from_tensor_slices(np.arange(10)).batch(4)
    assert distribution.strategy_for("none") is None
    assert distribution.replica_batches(dataset, None) is dataset
    assert distribution.replica_batches(dataset, tf.distribute.get_strategy()) is dataset
    assert distribution.replicas(None) == 1
    assert distribution.is_chief() and distribution.writable(tmp_path / "x") == tmp_path / "x"


def test_replica_batches_cut_every_batch_into_consecutive_slices():
    cpus = tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([cpus[0].name])  # one replica: the slices are the whole batches
    dataset = tf.data.Dataset.from_tensor_slices(np.arange(10)).batch(4)
    sliced = distribution.replica_batches(dataset, strategy)
    assert sliced is dataset  # nothing to cut on one replica

    class TwoReplicas:  # the arithmetic of two replicas of one worker, as distribute_datasets_from_function calls it
        num_replicas_in_sync = 2

        def distribute_datasets_from_function(self, make):
            return make(tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2))

    pieces = [list(map(int, piece)) for piece in distribution.replica_batches(dataset, TwoReplicas())]
    assert pieces == [[0, 1], [2, 3], [4, 5], [6, 7], [8], [9]]

    class SecondWorker(TwoReplicas):  # worker 1 of two, one replica each: it keeps the second halves
        def distribute_datasets_from_function(self, make):
            return make(tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2))

    assert [list(map(int, p)) for p in distribution.replica_batches(dataset, SecondWorker())] == [[2, 3], [6, 7], [9]]
