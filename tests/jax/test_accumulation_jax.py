"""GradientAccumulationModel's JAX train step against independent references: the full-batch gradient
from ``jax.grad`` of the model's stateless forward pass with a hand-written loss, Keras's own
optimizer-side accumulation, hand-computed BatchNorm statistics and metrics."""

from tests.jax import require_jax_backend

require_jax_backend()

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import tfvit
from tfvit.training import GradientAccumulationModel

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


def numpy_weights(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]


def full_batch_gradient(model, x, y, sample_weight=None, l2=0.0):
    """d/dw of (1/B) sum_j w_j CE(y_j, f(x_j)) + l2 sum ||kernel||^2, by jax.grad of the model's
    stateless call: no Keras loss, trainer or wrapper involved."""
    non_trainable = [v.value for v in model.non_trainable_variables]
    weights = jnp.ones(len(x)) if sample_weight is None else jnp.asarray(sample_weight, "float32")
    kernels = [v.path.endswith("kernel") for v in model.trainable_variables]

    def loss(trainable):
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        cross_entropy = -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(y)[:, None], axis=1)[:, 0]
        penalty = sum(jnp.sum(t ** 2) for t, is_kernel in zip(trainable, kernels) if is_kernel)
        return jnp.sum(weights * cross_entropy) / len(x) + l2 * penalty

    return [np.asarray(g) for g in jax.jit(jax.grad(loss))([v.value for v in model.trainable_variables])]


def applied_update(make, steps, x, y, sample_weight=None, **compile_kwargs):
    """Train one step with SGD(learning_rate=1) and return w_before - w_after (the applied gradient)."""
    model = make()
    before = numpy_weights(model)
    wrapper = GradientAccumulationModel(model, steps=steps)
    wrapper.compile(optimizer=keras.optimizers.SGD(1.0), loss=LOSS, **compile_kwargs)
    wrapper.fit(x, y, sample_weight=sample_weight, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert int(wrapper.optimizer.iterations) == 1
    return [b - a for b, a in zip(before, numpy_weights(model))]


def assert_all_close(got, want, atol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=atol)


def test_the_step_runs_on_the_jax_backend():
    assert keras.backend.backend() == "jax"
    wrapper = GradientAccumulationModel(mlp(), steps=2)  # raised on every backend but TensorFlow before
    wrapper.compile(optimizer="sgd", loss=LOSS)
    assert wrapper.jit_compile  # the step below is traced and compiled by jax.jit


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 16])
def test_applied_gradient_equals_full_batch_gradient(steps):
    x, y = data(mlp(), 10)  # 10 examples: 3, 4 and 7 do not divide it, 16 exceeds it
    assert_all_close(applied_update(mlp, steps, x, y), full_batch_gradient(mlp(), x, y))


def test_without_jit_the_same_update():
    x, y = data(mlp(), 10)
    assert_all_close(applied_update(mlp, 4, x, y, run_eagerly=True), full_batch_gradient(mlp(), x, y))


def test_swin_gradient_equals_full_batch_gradient():
    x, y = data(tiny_swin(), 7)  # 3 micro-batches of 3, the last one padded with 2 masked rows
    assert_all_close(applied_update(tiny_swin, 3, x, y), full_batch_gradient(tiny_swin(), x, y))


@pytest.mark.parametrize("steps", [2, 4])
def test_sample_weights_weigh_the_update_as_in_the_full_batch(steps):
    x, y = data(mlp(), 10)
    sample_weight = np.random.default_rng(3).uniform(0.0, 2.0, 10).astype("float32")
    sample_weight[[1, 8]] = 0.0
    want = full_batch_gradient(mlp(), x, y, sample_weight=sample_weight)
    assert_all_close(applied_update(mlp, steps, x, y, sample_weight=sample_weight), want)
    # and the weights matter: the unweighted gradient is another one
    assert max(np.abs(a - b).max() for a, b in zip(want, full_batch_gradient(mlp(), x, y))) > 1e-3


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_weight_penalty_counts_once_per_step(policy):
    make = lambda: mlp(regularizer=keras.regularizers.L2(0.05))
    x, y = data(make(), 10)
    want = full_batch_gradient(make(), x, y, l2=0.05)
    keras.mixed_precision.set_global_policy(policy)  # mixed_float16: the correction is loss-scaled too
    got = applied_update(make, 4, x, y)  # 4 micro-batches of 3, the last one padded
    assert_all_close(got, want, atol=1e-5 if policy == "float32" else 2e-3)


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
    # optimizer.iterations counts updates: 3 batches x 2 epochs (Keras's counts its applied updates too)
    assert int(wrapper.optimizer.iterations) == int(keras_side.optimizer.iterations) == 6
    assert_all_close(numpy_weights(ours), numpy_weights(keras_side))


def test_iterations_count_updates_with_a_short_last_batch():
    x, y = data(mlp(), 22)
    wrapper = GradientAccumulationModel(mlp(), steps=4)
    wrapper.compile(optimizer="sgd", loss=LOSS)
    wrapper.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)  # batches of 8, 8 and 6
    assert int(wrapper.optimizer.iterations) == 6


def test_metrics_and_loss_see_each_example_once():
    x, y = data(mlp(), 10)
    model = mlp()
    logits = keras.ops.convert_to_numpy(model(x))
    wrapper = GradientAccumulationModel(model, steps=4)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS,
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    history = wrapper.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0).history
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(history["acc"][0], np.mean(logits.argmax(-1) == y), atol=1e-7)
    np.testing.assert_allclose(history["loss"][0], -log_probabilities[np.arange(10), y].mean(), rtol=1e-5)


def test_reported_loss_counts_the_weight_penalty_once():
    make = lambda: mlp(regularizer=keras.regularizers.L2(0.05))
    x, y = data(make(), 10)
    model = make()
    logits = keras.ops.convert_to_numpy(model(x))
    penalty = 0.05 * sum(float(np.sum(w ** 2)) for w, v in zip(numpy_weights(model), model.trainable_weights)
                         if v.path.endswith("kernel"))
    wrapper = GradientAccumulationModel(model, steps=4)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    loss = wrapper.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -log_probabilities[np.arange(10), y].mean() + penalty, rtol=1e-5)


def test_batch_norm_statistics_update_per_micro_batch():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.5), keras.layers.Dense(3)])
    x, y = data(model, 8)
    wrapper = GradientAccumulationModel(model, steps=2)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    wrapper.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # Two updates of the moving mean, one per micro-batch: m <- 0.5 m + 0.5 mean(micro-batch).
    expected = 0.5 * (0.5 * 0.0 + 0.5 * x[:4].mean(0)) + 0.5 * x[4:].mean(0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].moving_mean), expected, atol=1e-6)


def test_micro_batches_run_in_one_traced_loop_not_python_calls():
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
        wrapper.fit(*data(mlp(), 16), batch_size=16, epochs=2, verbose=0)
        return len(calls)

    assert traced_calls(8) == traced_calls(1)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_accumulation_matches_full_batch(policy):
    x, y = data(mlp(), 8)
    keras.mixed_precision.set_global_policy(policy)
    updates = [applied_update(mlp, steps, x, y) for steps in (1, 4)]
    if policy == "mixed_float16":
        wrapper = GradientAccumulationModel(mlp(), steps=4)
        wrapper.compile(optimizer="sgd", loss=LOSS)
        assert isinstance(wrapper.optimizer, keras.optimizers.LossScaleOptimizer)
    keras.mixed_precision.set_global_policy("float32")
    expected = full_batch_gradient(mlp(), x, y)
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
    assert loaded.get_config()["steps"] == 3 and int(loaded.optimizer.iterations) == 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), wrapper.predict(x, verbose=0), atol=1e-6)
    # It trains on after loading, optimizer state included: the same next step as the original's.
    loaded.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    wrapper.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert int(loaded.optimizer.iterations) == 4
    assert_all_close(numpy_weights(loaded), numpy_weights(wrapper), atol=1e-6)
