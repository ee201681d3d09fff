"""GradientAccumulationModel's tests that hold on every Keras backend, and the helpers they share.

The train step has one implementation per backend (a ``tf.function`` loop on TensorFlow, a ``jax.jit``-traced
loop on JAX), but what it must equal does not depend on the backend: Keras's own optimizer-side accumulation,
hand-computed BatchNorm statistics, metrics and loss over each example once, a save/load round trip. So these
tests are written once, here, with backend-neutral Keras and NumPy only (no tensorflow, no jax), and each
backend's module star-imports them (``__all__``): pytest collects an imported ``test_*`` function as a test
of the module that imports it. This file's name does not start with ``test_``, so pytest never collects it on its own.

The references that need a backend's autodiff (the full-batch gradient from ``tf.GradientTape`` or
``jax.grad``) stay in tests/training/test_accumulation.py and tests/jax/test_accumulation_jax.py.
"""

import keras
import numpy as np
import pytest

import tfvit
from tfvit.layers import keyed_random
from tfvit.training import GradientAccumulationModel

# The tests both backends' files import with `import *` (and so collect); the helpers are imported by name.
__all__ = [
    "test_accumulation_with_dropout_and_drop_path_trains_as_plain_fit",
    "test_batch_norm_statistics_update_per_micro_batch",
    "test_invalid_accum_raises",
    "test_iterations_count_updates_with_a_short_last_batch",
    "test_metrics_and_loss_see_each_example_once",
    "test_micro_batches_run_in_one_traced_loop_not_python_calls",
    "test_model_without_trainable_weights_raises",
    "test_performer_redrawn_every_update_trains_the_same_under_accumulation",
    "test_reported_loss_counts_the_weight_penalty_once",
    "test_same_weights_as_keras_optimizer_accumulation",
    "test_save_load_and_wrapped_model_holds_trained_weights",
    "test_training_resumed_from_a_saved_model_draws_the_masks_of_an_uninterrupted_one",
]

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


def stochastic_model(kind, seed=1, rate=0.1, **options):
    """A tiny Swin or ViT with every stochastic layer on: drop path, dropout, attention dropout."""
    keras.utils.set_random_seed(seed)
    regularised = dict(drop_path_rate=rate, dropout=rate, attention_dropout=rate, num_classes=3, in_channels=1)
    if kind == "swin":
        return tfvit.models.SwinTransformer(image_size=8, patch_size=2, embed_dim=8, depths=(2,), num_heads=(2,),
                                            window_size=2, **regularised, **options)
    return tfvit.models.VisionTransformer(image_size=8, patch_size=2, embed_dim=8, depth=2, num_heads=2,
                                          **regularised, **options)


def trained_weights(model, accum, x, y, updates=3, optimizer=None):
    """Weights after ``updates`` full-batch updates: plain ``fit`` (accum None; eagerly, another path through
    Keras than the traced step, and quicker for a tiny model) or accumulation over ``accum``."""
    trainer = model if accum is None else GradientAccumulationModel(model, accum=accum)
    trainer.compile(optimizer=optimizer or keras.optimizers.SGD(0.1, momentum=0.9), loss=LOSS,
                    run_eagerly=accum is None and keras.backend.backend() == "tensorflow")
    trainer.fit(x, y, batch_size=len(x), epochs=updates, shuffle=False, verbose=0)
    return numpy_weights(model)


def data(model, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *model.input_shape[1:])).astype("float32")
    return x, rng.integers(0, 3, n)


def numpy_weights(model):
    # .copy(): convert_to_numpy may return a view of the backend's buffer, and a snapshot must not alias it.
    return [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]


def applied_update(make, accum, x, y, sample_weight=None, **compile_kwargs):
    """Train one step with SGD(learning_rate=1) and return w_before - w_after (the applied gradient)."""
    model = make()
    before = numpy_weights(model)
    wrapper = GradientAccumulationModel(model, accum=accum)
    wrapper.compile(optimizer=keras.optimizers.SGD(1.0), loss=LOSS, **compile_kwargs)
    wrapper.fit(x, y, sample_weight=sample_weight, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert int(wrapper.optimizer.iterations) == 1
    return [b - a for b, a in zip(before, numpy_weights(model))]


def assert_all_close(got, want, atol=1e-5):
    assert len(got) == len(want)  # zip alone would pass on a missing weight
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=atol)


def cross_entropy(logits, y):
    """Mean sparse cross-entropy from logits by hand, a reference independent of Keras's loss."""
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_probabilities[np.arange(len(y)), y].mean()


def check_mixed_precision_accumulation(policy, make, full_batch_gradient):
    """Under ``policy``, the update over 1 and over 4 micro-batches is finite and matches, within the policy's
    precision, ``full_batch_gradient(make(), x, y)`` in float32. Shared logic, each backend's test passes its
    own model and its own autodiff reference (GradientTape on TensorFlow, jax.grad on JAX)."""
    x, y = data(make(), 8)
    keras.mixed_precision.set_global_policy(policy)
    updates = [applied_update(make, accum, x, y) for accum in (1, 4)]
    if policy == "mixed_float16":
        # float16 needs loss scaling, or small gradients underflow; the wrapper must keep Keras's wrapping.
        wrapper = GradientAccumulationModel(make(), accum=4)
        wrapper.compile(optimizer="sgd", loss=LOSS)
        assert isinstance(wrapper.optimizer, keras.optimizers.LossScaleOptimizer)
    keras.mixed_precision.set_global_policy("float32")  # the reference in full precision
    expected = full_batch_gradient(make(), x, y)
    tolerance = 2e-3 if policy == "mixed_float16" else 2e-2  # bfloat16 keeps 8 bits of mantissa, float16 11
    for update in updates:
        assert len(update) == len(expected)
        for got, want in zip(update, expected):
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, want, atol=tolerance * max(1.0, np.abs(want).max()))


def keyed(full_batch_gradient):
    """``full_batch_gradient`` of the first update (t = 0), with the dropout and drop-path draws it has."""
    def gradient(model, x, y):
        with keyed_random.example_keyed_draws(0, 0, len(x)):
            return full_batch_gradient(model, x, y)

    return gradient


def check_dropout_accumulation(accum, full_batch_gradient, **compile_kwargs):
    """The update over ``accum`` micro-batches of a Swin with every stochastic layer on equals the
    backend's own autodiff gradient of the whole batch with the same draws."""
    make = lambda: stochastic_model("swin")
    x, y = data(make(), 10)
    expected = keyed(full_batch_gradient)(make(), x, y)
    assert_all_close(applied_update(make, accum, x, y, **compile_kwargs), expected)


@pytest.mark.parametrize("kind", ["swin", "vit"])
def test_accumulation_with_dropout_and_drop_path_trains_as_plain_fit(kind):
    # SGD: Adam divides by the gradient's size, so a gradient that is zero but for rounding (the key bias,
    # to which softmax is blind) moves its weight by ~lr whatever the rounding; SGD keeps rounding at 1e-7.
    x, y = data(stochastic_model(kind), 10)  # micro-batches of 4, 3, 2: padded to 12, 12 and 10 rows
    plain = trained_weights(stochastic_model(kind), None, x, y)
    for accum in (1, 3, 4, 8):
        assert_all_close(trained_weights(stochastic_model(kind), accum, x, y), plain)
    # The stochastic layers did act: the same training without them ends elsewhere.
    without = trained_weights(stochastic_model(kind, rate=0.0), None, x, y)
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, without)) > 1e-2


def test_performer_redrawn_every_update_trains_the_same_under_accumulation():
    make = lambda: stochastic_model("vit", rate=0.0, attention="performer_softmax",
                                    attention_kwargs={"num_features": 8, "redraw_interval": 1, "seed": 3})
    x, y = data(make(), 8)
    model = make()
    initial = keras.ops.convert_to_numpy(model.get_layer("blocks.0").attn.projection).copy()
    plain = trained_weights(model, None, x, y)
    redrawn = keras.ops.convert_to_numpy(model.get_layer("blocks.0").attn.projection)
    assert not np.allclose(redrawn, initial)  # the projection was redrawn
    accumulated_model = make()
    assert_all_close(trained_weights(accumulated_model, 4, x, y), plain)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(accumulated_model.get_layer("blocks.0").attn.projection),
                                  redrawn)


@pytest.mark.parametrize(
    "optimizer", [lambda **k: keras.optimizers.SGD(0.1, momentum=0.9, **k),
                  lambda **k: keras.optimizers.AdamW(1e-2, weight_decay=0.1, **k)],
    ids=["sgd", "adamw"],
)
def test_same_weights_as_keras_optimizer_accumulation(optimizer):
    accum, batch = 4, 8
    x, y = data(mlp(), 24)
    ours = mlp()
    wrapper = GradientAccumulationModel(ours, accum=accum)
    wrapper.compile(optimizer=optimizer(), loss=LOSS)
    wrapper.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    keras_side = mlp()
    keras_side.compile(optimizer=optimizer(gradient_accumulation_steps=accum), loss=LOSS)
    keras_side.fit(x, y, batch_size=batch // accum, epochs=2, shuffle=False, verbose=0)
    # optimizer.iterations counts updates: 3 batches x 2 epochs (Keras's counts its applied updates too)
    assert int(wrapper.optimizer.iterations) == int(keras_side.optimizer.iterations) == 6
    assert_all_close(numpy_weights(ours), numpy_weights(keras_side))


def test_iterations_count_updates_with_a_short_last_batch():
    x, y = data(mlp(), 22)
    wrapper = GradientAccumulationModel(mlp(), accum=4)
    wrapper.compile(optimizer="sgd", loss=LOSS)
    wrapper.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)  # batches of 8, 8 and 6
    assert int(wrapper.optimizer.iterations) == 6


def test_metrics_and_loss_see_each_example_once():
    x, y = data(mlp(), 10)
    model = mlp()
    logits = keras.ops.convert_to_numpy(model(x))
    wrapper = GradientAccumulationModel(model, accum=4)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS,
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    history = wrapper.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(history["acc"][0], np.mean(logits.argmax(-1) == y), atol=1e-7)
    # Both: tightly against Keras's loss on the full batch, and against a hand-written cross-entropy.
    np.testing.assert_allclose(history["loss"][0], float(LOSS(y, logits)), rtol=1e-6)
    np.testing.assert_allclose(history["loss"][0], cross_entropy(logits, y), rtol=1e-5)


def test_reported_loss_counts_the_weight_penalty_once():
    make = lambda: mlp(regularizer=keras.regularizers.L2(0.05))
    x, y = data(make(), 10)
    model = make()
    logits = keras.ops.convert_to_numpy(model(x))
    penalty = 0.05 * sum(float(np.sum(w ** 2)) for w, v in zip(numpy_weights(model), model.trainable_weights)
                         if v.path.endswith("kernel"))
    wrapper = GradientAccumulationModel(model, accum=4)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    loss = wrapper.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    np.testing.assert_allclose(loss, cross_entropy(logits, y) + penalty, rtol=1e-5)


def test_batch_norm_statistics_update_per_micro_batch():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.5), keras.layers.Dense(3)])
    x, y = data(model, 8)
    wrapper = GradientAccumulationModel(model, accum=2)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    wrapper.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # Two updates of the moving mean, one per micro-batch: m <- 0.5 m + 0.5 mean(micro-batch).
    expected = 0.5 * (0.5 * 0.0 + 0.5 * x[:4].mean(0)) + 0.5 * x[4:].mean(0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].moving_mean), expected, atol=1e-6)


def test_micro_batches_run_in_one_traced_loop_not_python_calls():
    # fit traces its step (tf.function on TensorFlow, jax.jit on JAX) and runs call() only while tracing: a
    # Python loop over the micro-batches would call it once per micro-batch and trace 8 calls instead of one.
    calls = []

    class Counting(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            calls.append(1)  # runs once per trace, never per execution
            return self.dense(x)

    def traced_calls(accum):
        calls.clear()
        model = Counting()
        model(np.zeros((1, 6), "float32"))
        wrapper = GradientAccumulationModel(model, accum=accum)
        wrapper.compile(optimizer="sgd", loss=LOSS)
        wrapper.fit(*data(mlp(), 16), batch_size=16, epochs=2, verbose=0)
        return len(calls)

    assert traced_calls(8) == traced_calls(1)


def test_save_load_and_wrapped_model_holds_trained_weights(tmp_path):
    model = mlp()
    x, y = data(model, 12)
    wrapper = GradientAccumulationModel(model, accum=3)
    wrapper.compile(optimizer="adamw", loss=LOSS)
    wrapper.fit(x, y, batch_size=6, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), wrapper.predict(x, verbose=0))
    path = str(tmp_path / "wrapped.keras")
    wrapper.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GradientAccumulationModel) and loaded.accum == 3
    assert loaded.get_config()["accum"] == 3 and int(loaded.optimizer.iterations) == 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), wrapper.predict(x, verbose=0), atol=1e-6)
    # It trains on after loading, optimizer state included: the same next step as the original's.
    loaded.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    wrapper.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert int(loaded.optimizer.iterations) == 4
    assert_all_close(numpy_weights(loaded), numpy_weights(wrapper), atol=1e-6)


def test_training_resumed_from_a_saved_model_draws_the_masks_of_an_uninterrupted_one(tmp_path):
    # The masks depend on the layer seeds (in the config) and the optimizer's update count (saved with it).
    x, y = data(stochastic_model("vit"), 8)
    compile_args = lambda: dict(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=LOSS)
    whole = GradientAccumulationModel(stochastic_model("vit"), accum=2)
    whole.compile(**compile_args())
    whole.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    first = GradientAccumulationModel(stochastic_model("vit"), accum=2)
    first.compile(**compile_args())
    first.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "half.keras")
    resumed = keras.saving.load_model(tmp_path / "half.keras")
    resumed.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert int(resumed.optimizer.iterations) == 4
    assert_all_close(numpy_weights(resumed), numpy_weights(whole), atol=1e-6)
    # Without the saved count the second epoch would repeat the first one's masks: a different result.
    repeated = keras.saving.load_model(tmp_path / "half.keras")
    repeated.optimizer.iterations.assign(0)
    repeated.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert max(float(np.abs(a - b).max()) for a, b in zip(numpy_weights(repeated), numpy_weights(whole))) > 1e-4


@pytest.mark.parametrize("accum", [0, -2, 1.5, "2", True])
def test_invalid_accum_raises(accum):
    with pytest.raises(ValueError, match="accum"):
        GradientAccumulationModel(mlp(), accum=accum)


def test_model_without_trainable_weights_raises():
    frozen = keras.Sequential([keras.Input((3,)), keras.layers.Activation("relu")])
    with pytest.raises(ValueError, match="no trainable weights"):
        GradientAccumulationModel(frozen, accum=2)
