"""GradientAccumulationModel against independent references: the full-batch gradient from a
GradientTape, Keras's own optimizer-side accumulation, hand-computed BatchNorm statistics."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvit
from tfvit.training import GradientAccumulationModel

RNG = np.random.default_rng(0)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(seed=1, regularizer=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh", kernel_regularizer=regularizer),
        keras.layers.Dense(3, kernel_regularizer=regularizer),
    ])


def tiny_swin(seed=1):
    keras.utils.set_random_seed(seed)
    return tfvit.models.SwinTransformer(
        image_size=8, patch_size=2, in_channels=1, embed_dim=8, depths=(2,), num_heads=(2,), window_size=2,
        num_classes=3, drop_path_rate=0.0,
    )


def data(model, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *model.input_shape[1:])).astype("float32")
    return x, rng.integers(0, 3, n)


def full_batch_gradient(model, x, y, with_penalty=False):
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=True))
        if with_penalty:
            loss += tf.add_n(model.losses)
    return [g.numpy() for g in map(tf.convert_to_tensor, tape.gradient(loss, model.trainable_weights))]


def applied_update(make, steps, x, y, jit_compile=False):
    """Train one step with SGD(learning_rate=1) and return w_before - w_after (the applied gradient)."""
    model = make()
    before = [w.numpy() for w in model.trainable_weights]
    wrapper = GradientAccumulationModel(model, steps=steps)
    wrapper.compile(optimizer=keras.optimizers.SGD(1.0), loss=LOSS, jit_compile=jit_compile)
    wrapper.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return [b - w.numpy() for b, w in zip(before, model.trainable_weights)]


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 16])
def test_applied_gradient_equals_full_batch_gradient(steps):
    x, y = data(mlp(), 10)  # 10 examples: 3, 4 and 7 do not divide it, 16 exceeds it
    expected = full_batch_gradient(mlp(), x, y)
    for got, want in zip(applied_update(mlp, steps, x, y), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("steps", [3, 4])
def test_swin_gradient_under_xla_equals_full_batch_gradient(steps):
    x, y = data(tiny_swin(), 6)
    expected = full_batch_gradient(tiny_swin(), x, y)
    for got, want in zip(applied_update(tiny_swin, steps, x, y, jit_compile=True), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_weight_penalty_counts_once_per_step():
    make = lambda: mlp(regularizer=keras.regularizers.L2(0.05))
    x, y = data(make(), 10)
    expected = full_batch_gradient(make(), x, y, with_penalty=True)
    for got, want in zip(applied_update(make, 4, x, y), expected):  # 4 micro-batches of 3, last padded
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    "optimizer", [lambda **k: keras.optimizers.SGD(0.1, momentum=0.9, **k),
                  lambda **k: keras.optimizers.AdamW(1e-2, weight_decay=0.1, **k)],
    ids=["sgd", "adamw"],
)
def test_same_weights_as_keras_optimizer_accumulation(optimizer):
    steps, batch = 4, 8
    x, y = data(mlp(), 24)
    ours = mlp()
    wrapper = GradientAccumulationModel(ours, steps=steps)
    wrapper.compile(optimizer=optimizer(), loss=LOSS)
    wrapper.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    keras_side = mlp()
    keras_side.compile(optimizer=optimizer(gradient_accumulation_steps=steps), loss=LOSS)
    keras_side.fit(x, y, batch_size=batch // steps, epochs=2, shuffle=False, verbose=0)
    assert int(wrapper.optimizer.iterations) == int(keras_side.optimizer.iterations) == 6
    for a, b in zip(ours.trainable_weights, keras_side.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_metrics_and_loss_see_each_example_once():
    x, y = data(mlp(), 10)
    model = mlp()
    logits = model(x).numpy()
    wrapper = GradientAccumulationModel(model, steps=4)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS,
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    history = wrapper.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["acc"][0], np.mean(logits.argmax(-1) == y), atol=1e-7)
    np.testing.assert_allclose(history["loss"][0], float(LOSS(y, logits)), rtol=1e-6)


def test_batch_norm_statistics_update_per_micro_batch():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.5), keras.layers.Dense(3)])
    x, y = data(model, 8)
    wrapper = GradientAccumulationModel(model, steps=2)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    wrapper.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # Two updates of the moving mean, one per micro-batch: m <- 0.5 m + 0.5 mean(micro-batch).
    expected = 0.5 * (0.5 * 0.0 + 0.5 * x[:4].mean(0)) + 0.5 * x[4:].mean(0)
    np.testing.assert_allclose(model.layers[0].moving_mean.numpy(), expected, atol=1e-6)


def test_micro_batches_run_in_one_graph_loop_not_python_calls():
    calls = []

    class Counting(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            calls.append(1)  # runs once per trace, never per execution
            return self.dense(x)

    def traced_calls(steps):
        calls.clear()
        model = Counting()
        model(np.zeros((1, 6), "float32"))
        wrapper = GradientAccumulationModel(model, steps=steps)
        wrapper.compile(optimizer="sgd", loss=LOSS)
        wrapper.fit(*data(mlp(), 16), batch_size=16, epochs=1, verbose=0)
        return len(calls)

    assert traced_calls(8) == traced_calls(1)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_accumulation_matches_full_batch(policy):
    x, y = data(tiny_swin(), 8)
    keras.mixed_precision.set_global_policy(policy)
    updates = [applied_update(tiny_swin, steps, x, y) for steps in (1, 4)]
    if policy == "mixed_float16":
        model = tiny_swin()
        wrapper = GradientAccumulationModel(model, steps=4)
        wrapper.compile(optimizer="sgd", loss=LOSS)
        assert isinstance(wrapper.optimizer, keras.optimizers.LossScaleOptimizer)
    keras.mixed_precision.set_global_policy("float32")
    expected = full_batch_gradient(tiny_swin(), x, y)
    tolerance = 2e-3 if policy == "mixed_float16" else 2e-2
    for update in updates:
        for got, want in zip(update, expected):
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, want, atol=tolerance * max(1.0, np.abs(want).max()))


def test_save_load_and_wrapped_model_holds_trained_weights(tmp_path):
    model = mlp()
    x, y = data(model, 12)
    wrapper = GradientAccumulationModel(model, steps=3)
    wrapper.compile(optimizer="adamw", loss=LOSS)
    wrapper.fit(x, y, batch_size=6, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), wrapper.predict(x, verbose=0))
    path = str(tmp_path / "wrapped.keras")
    wrapper.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GradientAccumulationModel) and loaded.steps == 3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), wrapper.predict(x, verbose=0), atol=1e-6)
    loaded.fit(x, y, batch_size=6, epochs=1, verbose=0)  # trains on after loading, optimizer state included


@pytest.mark.parametrize("steps", [0, -2, 1.5, "2", True])
def test_invalid_steps_raise(steps):
    with pytest.raises(ValueError, match="steps"):
        GradientAccumulationModel(mlp(), steps=steps)


def test_model_without_trainable_weights_raises():
    frozen = keras.Sequential([keras.Input((3,)), keras.layers.Activation("relu")])
    with pytest.raises(ValueError, match="no trainable weights"):
        GradientAccumulationModel(frozen, steps=2)


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
        wrapper = GradientAccumulationModel(model, steps=2)
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
