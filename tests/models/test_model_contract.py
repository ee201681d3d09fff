"""What every tfvit model promises: gradients reach every weight, .keras save/load and
get_config/from_config give the same model, mixed precision stays close to float32, and the
studies' small Swin configurations train a step and save."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvit

SMALL = ["vit_cifar_patch4_32", "vit_mnist_patch4_28", "swin_cifar_patch2_window4_32", "swin_mnist_patch2_window4_28"]
# Shrunk for speed; the structure (stages, padding, single-window last stage) is the registry's.
SHRINK = {"vit": dict(depth=2), "swin": dict(depths=(1, 1, 2))}


def small_model(name, **kwargs):
    return tfvit.create_model(name, **SHRINK[name.split("_")[0]], **kwargs)


def images_for(model, batch=2, seed=0):
    return np.random.default_rng(seed).random((batch, *model.input_shape[1:])).astype("float32")


@pytest.mark.parametrize("name", SMALL)
def test_gradients_reach_every_trainable_weight(name):
    model = small_model(name, drop_path_rate=0.0)
    x, y = images_for(model, 4), np.array([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), from_logits=True)
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None or not np.any(tf.convert_to_tensor(g).numpy())]
    assert not missing


@pytest.mark.parametrize("name", SMALL)
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    model = small_model(name)
    x = images_for(model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), model(x).numpy(), atol=1e-6)
    assert clone.get_config() == model.get_config()


@pytest.mark.parametrize("name", ["swin_cifar_patch2_window4_32", "swin_mnist_patch2_window4_28"])
def test_study_swin_configurations_train_a_step_and_save(name, tmp_path):
    model = tfvit.create_model(name)  # the full registry configuration
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = images_for(model, 8), np.arange(8) % 10
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)
    path = str(tmp_path / "trained.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 1e-2), ("mixed_bfloat16", 6e-2)])
@pytest.mark.parametrize("name", SMALL)
def test_mixed_precision_model_is_close_to_float32(name, policy, tolerance):
    model = small_model(name)
    x = images_for(model, 4)
    expected = model(x).numpy()
    keras.mixed_precision.set_global_policy(policy)
    mixed = small_model(name)
    mixed.set_weights(model.get_weights())
    out = mixed(x)
    compute = policy.split("_")[1]
    assert out.dtype == "float32"  # logits come out in float32 for the loss
    assert all(w.dtype == "float32" for w in mixed.weights if "float" in w.dtype)
    assert mixed.get_layer("patch_embed").compute_dtype == compute
    assert mixed.get_layer("norm").compute_dtype == compute
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy(), expected, atol=tolerance * max(1.0, np.abs(expected).max()))
