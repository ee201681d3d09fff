"""GradientAccumulationModel on TensorFlow against independent references: the full-batch gradient from a
GradientTape (with and without XLA, under mixed precision) and, under MirroredStrategy, single-device training.
The backend-neutral references (Keras's own optimizer-side accumulation, hand-computed BatchNorm statistics,
metrics and loss, save/load) are tests/accumulation_cases.py's, imported below and collected here."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest
import tensorflow as tf

from tfvit.training import GradientAccumulationModel

from tests.accumulation_cases import (
    LOSS, applied_update, assert_all_close, check_dropout_accumulation, check_mixed_precision_accumulation, data,
    keyed, mlp, stochastic_model, tiny_swin,
)
# The backend-neutral tests (the module's __all__), shared with tests/jax/test_accumulation_jax.py:
# pytest collects them here.
from tests.accumulation_cases import *  # noqa: F401,F403


def full_batch_gradient(model, x, y, with_penalty=False):
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=True))
        if with_penalty:
            loss += tf.add_n(model.losses)
    return [g.numpy() for g in map(tf.convert_to_tensor, tape.gradient(loss, model.trainable_weights))]


@pytest.mark.parametrize("accum", [1, 2, 3, 4, 7, 16])
def test_applied_gradient_equals_full_batch_gradient(accum):
    x, y = data(mlp(), 10)  # 10 examples: 3, 4 and 7 do not divide it, 16 exceeds it
    assert_all_close(applied_update(mlp, accum, x, y), full_batch_gradient(mlp(), x, y))


@pytest.mark.parametrize("accum", [3, 4])
def test_swin_gradient_under_xla_equals_full_batch_gradient(accum):
    x, y = data(tiny_swin(), 6)
    expected = full_batch_gradient(tiny_swin(), x, y)
    assert_all_close(applied_update(tiny_swin, accum, x, y, jit_compile=True), expected)


def test_weight_penalty_counts_once_per_step():
    make = lambda: mlp(regularizer=keras.regularizers.L2(0.05))
    x, y = data(make(), 10)
    expected = full_batch_gradient(make(), x, y, with_penalty=True)
    assert_all_close(applied_update(make, 4, x, y), expected)  # 4 micro-batches of 3, last padded


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_accumulation_matches_full_batch(policy):
    check_mixed_precision_accumulation(policy, tiny_swin, full_batch_gradient)


@pytest.mark.parametrize("accum, jit_compile", [(3, False), (4, False), (4, True)])
def test_gradient_with_dropout_and_drop_path_equals_full_batch_gradient(accum, jit_compile):
    check_dropout_accumulation(accum, full_batch_gradient, jit_compile=jit_compile)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_accumulation_with_dropout_matches_full_batch(policy):
    check_mixed_precision_accumulation(policy, lambda: stochastic_model("swin"), keyed(full_batch_gradient))


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfvit.training import GradientAccumulationModel

    reduce_graphs = []
    original = tf.distribute.StrategyExtended.batch_reduce_to
    def spy(self, *args, **kwargs):
        reduce_graphs.append(tf.compat.v1.get_default_graph().name)
        return original(self, *args, **kwargs)
    tf.distribute.StrategyExtended.batch_reduce_to = spy

    def make():
        keras.utils.set_random_seed(1)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    single = make()
    single.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    single.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = make()
        wrapper = GradientAccumulationModel(model, accum=2)
        wrapper.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    wrapper.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    diff = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(model.weights, single.weights))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_diff": diff, "reduce_graphs": reduce_graphs}))
""")


def test_mirrored_strategy_two_cpus_all_reduces_once_per_step():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, env=env, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["max_diff"] < 1e-5  # same weights as single-device training on the global batch
    # The gradient all-reduce is traced in the step itself, never inside the micro-batch loop body.
    assert report["reduce_graphs"] and not any("while" in name for name in report["reduce_graphs"])


MIRRORED_STOCHASTIC = textwrap.dedent("""
    import json
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.accumulation_cases import data, numpy_weights, stochastic_model, trained_weights

    x, y = data(stochastic_model("vit"), 12)
    single = trained_weights(stochastic_model("vit"), None, x, y)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    diffs = {}
    for accum in (None, 4):  # plain fit; micro-batches of 2 on each replica's 6 examples
        with strategy.scope():
            model = stochastic_model("vit")
            weights = trained_weights(model, accum, x, y)
        diffs[str(accum)] = max(float(np.abs(a - b).max()) for a, b in zip(weights, single))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_diff": diffs}))
""")


def test_mirrored_strategy_draws_the_masks_of_single_device_training():
    # Two replicas see examples 0-5 and 6-11 of each global batch; their masks must be those of examples
    # 0-11 on one device, in plain fit and in accumulation alike.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", MIRRORED_STOCHASTIC], capture_output=True, text=True, env=env,
                            timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert all(diff < 1e-5 for diff in report["max_diff"].values()), report


def test_a_wrapper_saved_with_steps_loads_with_accum():
    """Models saved before the argument was renamed (``steps``, now ``accum`` as --accum and RunConfig) load."""
    config = GradientAccumulationModel(mlp(), accum=3).get_config()
    config["steps"] = config.pop("accum")
    loaded = GradientAccumulationModel.from_config(config)
    assert loaded.accum == 3 and "steps" not in loaded.get_config()
