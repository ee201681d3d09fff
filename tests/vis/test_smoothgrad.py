import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.vis import toy_models
from tfvit.vis.smoothgrad import smoothgrad

IMAGES = np.random.default_rng(3).uniform(size=(3, 8, 10, 2)).astype("float32")


def min_max(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


def logit_gradients(logits_model, images, classes):
    """d logit_c / dx of each image, from an explicit tape."""
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = logits_model(x, training=False)
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    return tape.gradient(score, x).numpy().astype(np.float64)


def predicted(model, images):
    return model.predict(images, verbose=0).argmax(-1)


@pytest.mark.parametrize("samples", [0, 3])
def test_without_noise_smoothgrad_is_the_largest_absolute_logit_gradient_over_the_channels(samples):
    model = toy_models.small_cnn(shape=(8, 10, 2), softmax=True)  # the softmax is bypassed: the logit is scored
    logits_model = keras.Model(model.inputs, model.layers[-2].output)
    grads = logit_gradients(logits_model, IMAGES, predicted(model, IMAGES))
    got = smoothgrad(model, IMAGES, samples=samples, noise=0.0)
    assert got.shape == (3, 8, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, min_max(np.abs(grads).max(-1)), atol=1e-5)


def test_with_noise_smoothgrad_averages_the_gradients_of_noisy_copies():
    # Smilkov et al. 2017, eq. 3, with the noise tf-keras-vis draws: N(0, sigma) per (sample, image, pixel),
    # sigma = noise (max - min) of each image, from numpy's generator seeded with ``seed``.
    model = toy_models.small_cnn(shape=(8, 10, 2))
    classes = [2, 0, 1]
    np.random.seed(7)
    sigma = 0.3 * (IMAGES.max(axis=(1, 2, 3)) - IMAGES.min(axis=(1, 2, 3)))
    noise = np.random.normal(0.0, sigma[None, :, None, None, None], (4, *IMAGES.shape))
    expected = np.mean([np.abs(logit_gradients(model, (IMAGES + n).astype("float32"), classes)) for n in noise],
                       axis=0)
    got = smoothgrad(model, IMAGES, class_index=classes, samples=4, noise=0.3, seed=7)
    np.testing.assert_allclose(got, min_max(expected.max(-1)), atol=1e-5)


def test_noise_is_seeded_and_numpys_global_generator_restored():
    model = toy_models.small_cnn(shape=(8, 10, 2))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    maps = smoothgrad(model, IMAGES, samples=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_allclose(smoothgrad(model, IMAGES, samples=3), maps, atol=1e-6)
    assert np.abs(smoothgrad(model, IMAGES, samples=3, seed=1) - maps).max() > 0.01


@pytest.mark.parametrize("class_index", [None, 1, [2, 0, 1]])
def test_class_index_picks_the_explained_logit(class_index):
    model, kernel, bias = toy_models.linear_model()
    # a linear model's gradient is its weight: the map is max over channels of |W_c|, whatever the image
    classes = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1) if class_index is None else \
        np.broadcast_to(class_index, (3,))
    expected = np.stack([np.abs(kernel[..., c]).max(-1) for c in classes])
    got = smoothgrad(model, IMAGES, class_index=class_index, samples=2)
    np.testing.assert_allclose(got, min_max(expected), atol=1e-5)


def test_batch_size_does_not_change_the_maps_without_noise():
    model = toy_models.small_cnn(shape=(8, 10, 2))
    np.testing.assert_allclose(smoothgrad(model, IMAGES, noise=0.0, batch_size=2),
                               smoothgrad(model, IMAGES, noise=0.0), atol=1e-6)


def test_no_keras_progress_output_and_logging_state_kept(capsys):
    model = toy_models.small_cnn(shape=(8, 10, 2))
    assert keras.config.is_interactive_logging_enabled()
    smoothgrad(model, IMAGES, samples=2)
    assert keras.config.is_interactive_logging_enabled()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("options, message", [
    ({"samples": -1}, r"samples must be a non-negative integer, got -1"),
    ({"noise": -0.1}, r"noise must be a finite number >= 0 \(a fraction of the image's range\), got -0.1"),
    ({"noise": "high"}, r"noise must be .* got 'high'"),
    ({"seed": None}, r"seed must be an integer, got None"),
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"class_index": 2.5}, r"class_index must be integers, got 2.5"),
])
def test_bad_options_raise_value_errors_naming_them(options, message):
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match=message):
        smoothgrad(model, IMAGES, **options)
