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


UNEVEN_METRICS = """
import json
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tfvit.training import GradientAccumulationModel, distribution

rng = np.random.default_rng(0)
x, y = rng.normal(size=(3, 5)).astype("float32") * 3, np.array([0, 1, 2])
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)  # one batch of 3: the replicas get 1 and 2 examples

def logs(strategy):
    with distribution.scope(strategy):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        trainer = GradientAccumulationModel(model, accum=1)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = distribution.replica_batches(data, strategy)
    seen = {"evaluate": [], "fit": []}  # the logs of each batch, as the progress bar and StepScalars get them

    class Record(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            seen["evaluate"].append({k: float(np.asarray(v).reshape(())) for k, v in logs.items()})

        def on_train_batch_end(self, batch, logs=None):
            seen["fit"].append({k: float(np.asarray(v).reshape(())) for k, v in logs.items()})

    with distribution.expected_end_of_data(strategy):
        evaluated = trainer.evaluate(batches, verbose=0, return_dict=True, callbacks=[Record()])
        trained = trainer.fit(batches, epochs=1, verbose=0, callbacks=[Record()]).history
    return {"evaluate": evaluated, "fit": {k: v[0] for k, v in trained.items()},
            "evaluate batch": seen["evaluate"][0], "fit batch": seen["fit"][0]}

print(json.dumps({"single": logs(None), "mirrored": logs(distribution.strategy_for("mirrored"))}))
"""


def test_metrics_of_uneven_replica_slices_are_those_of_the_whole_batch(tmp_path):
    # Keras's per-batch logs average the replicas' own means, which weighs 1 example like 2 (its epoch logs read
    # the summed metric variables): both must be one device's.
    import os
    import subprocess
    import sys

    from tests.recipes.loading import ROOT

    done = subprocess.run([sys.executable, "-c", UNEVEN_METRICS], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for step in ("evaluate", "fit", "evaluate batch", "fit batch"):
        single, mirrored = report["single"][step], report["mirrored"][step]
        assert set(single) == set(mirrored) and single, report
        for name in single:
            assert abs(single[name] - mirrored[name]) <= 1e-6 * max(1.0, abs(single[name])), (step, name, report)
