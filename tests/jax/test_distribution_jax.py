"""``--strategy mirrored`` under KERAS_BACKEND=jax: ``keras.distribution.DataParallel`` over 2 host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``) with GradientAccumulationModel's JAX step trains as one
device: same test loss (rel. 1e-4) and final weights (atol 1e-5), through ``tfvit.experiments.run``."""

import json
import os
import subprocess
import sys
import textwrap

from tests.recipes.loading import ROOT

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from tfvit.experiments import RunConfig, run, trained_model
    from tfvit.training import distribution

    logdir, data_dir = sys.argv[1], sys.argv[2]
    report = {"devices": len(jax.devices())}
    # Keras asks the distribution for the layout of every batch it shards across the devices: count them.
    made = distribution.strategy_for("mirrored")
    layouts, layout = [], made.get_data_layout
    made.get_data_layout = lambda shape: layouts.append(shape) or layout(shape)
    for strategy in ("none", "mirrored"):
        config = RunConfig(dataset="mnist", model="vit_mnist_patch4_28", batch_size=32, accum=2, epochs=1,
                           optimizer="sgd", learning_rate=0.05, precision="float32", jit=False, limit_train=96,
                           limit_test=64, data_dir=data_dir, strategy=strategy, drop_path=0.1)
        found = run(config, logdir=f"{logdir}/{strategy}", verbose=0)
        report[strategy] = {"loss": found["test_loss"], "train_loss": found["history"]["loss"][0],
                            "weights": [np.asarray(w.numpy()) for w in trained_model(found, f"{logdir}/{strategy}").weights]}
    # A last batch of 5 cannot be shared by 2 devices: refused before training, with what to change.
    try:
        run(RunConfig(dataset="mnist", model="vit_mnist_patch4_28", batch_size=32, epochs=1, limit_train=101,
                      data_dir=data_dir, strategy="mirrored"), logdir=f"{logdir}/uneven", verbose=0)
        refused = ""
    except distribution.StrategyError as error:
        refused = str(error)
    print(json.dumps({"refused": refused,
        "devices": report["devices"], "replicas": distribution.replicas(made), "sharded_batches": len(layouts),
        "loss": [report[s]["loss"] for s in ("none", "mirrored")],
        "train_loss": [report[s]["train_loss"] for s in ("none", "mirrored")],
        "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(report["none"]["weights"], report["mirrored"]["weights"])),
    }))
""")


def test_data_parallel_on_two_host_devices_trains_as_one_device(tmp_path, owner_data):
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(owner_data)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2 and report["replicas"] == 2 and report["sharded_batches"] > 0, report
    single, parallel = report["loss"]
    assert abs(single - parallel) <= 1e-4 * abs(single), report
    assert abs(report["train_loss"][0] - report["train_loss"][1]) <= 1e-4 * report["train_loss"][0], report
    assert report["max_diff"] < 1e-5, report
    assert report["refused"].startswith("the train split's 101 examples come in batches of [32, 5]"), report
