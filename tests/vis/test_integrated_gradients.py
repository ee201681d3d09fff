import keras
import numpy as np
import pytest

from tests.vis import toy_models
from tfvit.vis.integrated_gradients import integrated_gradients, integrated_gradients_attributions

IMAGES = np.random.default_rng(3).uniform(size=(3, 8, 10, 2)).astype("float32")


def min_max(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


def baseline_of(name, images):
    if isinstance(name, str) and name == "black":
        return np.zeros_like(images)
    if isinstance(name, str) and name == "mean":
        return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
    return np.broadcast_to(name, images.shape)


@pytest.mark.parametrize("baseline", ["black", "mean", 0.3, np.linspace(0, 1, 20).reshape(10, 2)])
@pytest.mark.parametrize("steps", [1, 7])
def test_on_a_linear_model_ig_is_the_difference_times_the_weight_at_any_number_of_steps(baseline, steps):
    model, kernel, bias = toy_models.linear_model(softmax=True)  # the softmax is bypassed: IG of the logit
    classes = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1)
    expected = (IMAGES - baseline_of(baseline, IMAGES)) * np.stack([kernel[..., c] for c in classes])
    got = integrated_gradients_attributions(model, IMAGES, baseline=baseline, steps=steps, batch_size=4)
    assert got.shape == IMAGES.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    maps = integrated_gradients(model, IMAGES, baseline=baseline, steps=steps)
    assert maps.shape == (3, 8, 10) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, min_max(np.abs(expected).sum(-1)), atol=1e-5)


def quadratic_model():
    """logits_k = (v_k . x)^2: along the path x' + a (x - x') the gradient is linear in a, so the midpoint rule
    is exact and IG = (x - x') v_k (v_k . (x + x')) for any number of steps."""
    inputs = keras.Input((8, 10, 2))
    dense = keras.layers.Dense(3, use_bias=False)
    out = keras.layers.Lambda(lambda z: z ** 2)(dense(keras.layers.Flatten()(inputs)))
    model = keras.Model(inputs, out)
    v = np.random.default_rng(5).normal(size=(160, 3)).astype("float32") / 8
    dense.kernel.assign(v)
    return model, v.astype(np.float64).reshape(8, 10, 2, 3)


@pytest.mark.parametrize("baseline", ["black", 0.5])
def test_on_a_quadratic_model_ig_is_its_closed_form(baseline):
    model, v = quadratic_model()
    x, x0 = IMAGES.astype(np.float64), baseline_of(baseline, IMAGES).astype(np.float64)
    classes = [2, 0, 1]
    expected = np.stack([(x[b] - x0[b]) * v[..., c] * np.sum(v[..., c] * (x[b] + x0[b]))
                         for b, c in enumerate(classes)])
    got = integrated_gradients_attributions(model, IMAGES, class_index=classes, baseline=baseline, steps=3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_completeness_on_a_nonlinear_model():
    # Sundararajan et al. 2017, proposition 1: the attributions add up to F(x) - F(x'), F the class logit.
    model = toy_models.small_cnn(shape=(8, 10, 2), softmax=True)
    logits_model = keras.Model(model.inputs, model.layers[-2].output)
    baseline = np.full_like(IMAGES, 0.2)
    gap = (logits_model.predict(IMAGES, verbose=0) - logits_model.predict(baseline, verbose=0))[np.arange(3), 1]
    assert np.abs(gap).min() > 0.05  # a change large enough to be tested relatively

    def error(steps):
        total = integrated_gradients_attributions(model, IMAGES, class_index=1, baseline=0.2, steps=steps).sum(
            axis=(1, 2, 3))
        return np.abs(total - gap) / np.abs(gap)

    assert error(16).max() < 1e-2  # measured 1e-4
    assert error(2).min() > 10 * error(8).max()  # the midpoint rule converges as 1 / steps^2 (measured 16x)


@pytest.mark.parametrize("class_index", [None, 1, [2, 0, 1]])
def test_class_index_picks_the_explained_logit(class_index):
    model, kernel, bias = toy_models.linear_model()
    predicted = toy_models.linear_logits(IMAGES, kernel, bias).argmax(-1)
    classes = predicted if class_index is None else np.broadcast_to(class_index, (3,))
    expected = (IMAGES - IMAGES.mean(axis=(1, 2), keepdims=True)) * np.stack([kernel[..., c] for c in classes])
    got = integrated_gradients_attributions(model, IMAGES, class_index=class_index, steps=2)  # baseline "mean"
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_batch_size_does_not_change_the_maps():
    model = toy_models.small_cnn(shape=(8, 10, 2))
    np.testing.assert_allclose(integrated_gradients(model, IMAGES, steps=9, batch_size=4),
                               integrated_gradients(model, IMAGES, steps=9), atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"baseline": "white"}, r"baseline must be one of 'mean', 'black', a number or an array, got 'white'"),
    ({"baseline": np.zeros((3, 3))}, r"baseline must be .* broadcasts to the images' shape \(3, 8, 10, 2\), "
                                     r"got an array of shape \(3, 3\)"),
    ({"baseline": float("inf")}, r"baseline must be finite"),
    ({"baseline": True}, r"baseline must be a string, a number or an array, got True"),
    ({"steps": 0}, r"steps must be a positive integer, got 0"),
    ({"steps": 2.0}, r"steps must be a positive integer, got 2.0"),
    ({"batch_size": -1}, r"batch_size must be a positive integer, got -1"),
    ({"class_index": [0, 1]}, r"class_index must give one class per image: expected 3 values"),
])
def test_bad_options_raise_value_errors_naming_them(options, message):
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match=message):
        integrated_gradients(model, IMAGES, **options)


def test_images_are_checked():
    model, _, _ = toy_models.linear_model()
    with pytest.raises(ValueError, match="integrated_gradients_attributions: images of shape"):
        integrated_gradients_attributions(model, IMAGES[:, :4])
