"""tfvit's LayerNorm and its hand-written backward pass against float64 brute force and Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.layers import LayerNorm
from tests import reference

RNG = np.random.default_rng(0)
SHAPE = (2, 3, 6)
X = (RNG.normal(size=SHAPE) * 3.0 + 1.0)
GAMMA = RNG.normal(size=SHAPE[-1])
BETA = RNG.normal(size=SHAPE[-1])
W = RNG.normal(size=SHAPE)  # loss = sum(y * W): a different upstream gradient for every output


def finite_difference_gradients(x, w, eps, h=1e-6):
    """d sum(LN(x) * w) / d(x, gamma, beta) by central differences of the float64 reference."""

    def loss64(x, gamma, beta):
        return float(np.sum(reference.layer_norm(x, gamma, beta, eps) * w))

    grads = []
    for which in range(3):
        args = [x.copy(), GAMMA.copy(), BETA.copy()]
        grad = np.zeros_like(args[which])
        for index in np.ndindex(*grad.shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[which][index] += h
            minus[which][index] -= h
            grad[index] = (loss64(*plus) - loss64(*minus)) / (2 * h)
        grads.append(grad)
    return grads


def layer_with_weights(layer_class=LayerNorm, dtype=None, **kwargs):
    layer = layer_class(epsilon=1e-5, dtype=dtype, **kwargs)
    layer.build(SHAPE)
    for weight, value in ((layer.gamma, GAMMA), (layer.beta, BETA)):
        if weight is not None:
            weight.assign(value[: weight.shape[-1]].astype("float32"))  # axis=1 has 3 features, not 6
    return layer


def output_and_gradients(layer, x, w=W, jit=False):
    @tf.function(jit_compile=jit)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.constant(w, tf.float32))
        return y, tape.gradient(loss, [x, layer.gamma, layer.beta])

    y, grads = run(tf.constant(x))
    return np.asarray(tf.cast(y, tf.float64)), [np.asarray(tf.cast(g, tf.float64)) for g in grads]


@pytest.mark.parametrize("jit", [False, True])
def test_output_and_all_three_gradients_match_float64_finite_differences(jit):
    layer = layer_with_weights()
    assert layer._closed_form_applies(len(SHAPE))
    y, (dx, dgamma, dbeta) = output_and_gradients(layer, X.astype("float32"), jit=jit)
    np.testing.assert_allclose(y, reference.layer_norm(X, GAMMA, BETA, 1e-5), atol=2e-5)
    expected_dx, expected_dgamma, expected_dbeta = finite_difference_gradients(X, W, 1e-5)
    np.testing.assert_allclose(dx, expected_dx, atol=1e-4)
    np.testing.assert_allclose(dgamma, expected_dgamma, atol=1e-4)
    np.testing.assert_allclose(dbeta, expected_dbeta, atol=1e-4)


def test_matches_keras_layer_normalization_and_its_autodiff():
    x = (RNG.normal(size=(4, 17, 32)) * 5.0 - 2.0).astype("float32")
    ours, theirs = LayerNorm(epsilon=1e-6), keras.layers.LayerNormalization(epsilon=1e-6)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(RNG.normal(size=32).astype("float32"))
        layer.beta.assign(np.linspace(-1, 1, 32).astype("float32"))
    theirs.set_weights(ours.get_weights())
    w = RNG.normal(size=x.shape)
    y, grads = output_and_gradients(ours, x, w)
    y_keras, grads_keras = output_and_gradients(theirs, x, w)
    np.testing.assert_allclose(y, y_keras, atol=1e-5)
    for g, g_keras in zip(grads, grads_keras):
        np.testing.assert_allclose(g, g_keras, rtol=1e-4, atol=1e-4)


def test_mixed_bfloat16_is_close_to_float64():
    layer = layer_with_weights(dtype="mixed_bfloat16")
    x = tf.cast(tf.constant(X, tf.float32), tf.bfloat16)
    exact_x = np.asarray(tf.cast(x, tf.float64))
    y, (dx, dgamma, dbeta) = output_and_gradients(layer, x)
    assert layer(x).dtype == tf.bfloat16 and layer.gamma.dtype == "float32"
    np.testing.assert_allclose(y, reference.layer_norm(exact_x, GAMMA, BETA, 1e-5), atol=0.02)
    expected = finite_difference_gradients(exact_x, W, 1e-5)
    for got, want in zip((dx, dgamma, dbeta), expected):
        np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize("kwargs", [dict(rms_scaling=True), dict(center=False), dict(axis=1)])
def test_other_configurations_fall_back_to_keras(kwargs):
    x = X.astype("float32")
    ours = layer_with_weights(**kwargs)
    theirs = keras.layers.LayerNormalization(epsilon=1e-5, **kwargs)
    theirs.build(SHAPE)
    theirs.set_weights(ours.get_weights())
    assert not ours._closed_form_applies(len(SHAPE))
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-6)


def test_switch_off_uses_keras(monkeypatch):
    monkeypatch.setenv("TFVIT_CLOSED_FORM_GRADIENTS", "0")
    assert not layer_with_weights()._closed_form_applies(len(SHAPE))


def test_keeps_keras_weights_names_and_config():
    layer = layer_with_weights(name="norm1")
    assert [w.path for w in layer.weights] == ["norm1/gamma", "norm1/beta"]
    clone = LayerNorm.from_config(layer.get_config())
    assert isinstance(clone, keras.layers.LayerNormalization) and clone.epsilon == 1e-5
    assert keras.saving.get_registered_name(LayerNorm) == "tfvit>LayerNorm"
