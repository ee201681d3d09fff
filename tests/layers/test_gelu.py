"""tfvit's exact GELU and its hand-written derivative against float64 brute force."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.layers import gelu
from tfvit.layers.gelu import closed_form_gradients
from tests import reference

X = np.concatenate([np.linspace(-9.0, 9.0, 181), np.random.default_rng(0).normal(scale=2.0, size=300)])


def value_and_gradient(fn, x, jit=False):
    @tf.function(jit_compile=jit)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, x)  # d sum(y) / dx = GELU'(x) element-wise

    y, g = run(tf.constant(x))
    return np.asarray(tf.cast(y, tf.float64)), np.asarray(tf.cast(g, tf.float64))


def gelu_derivative_by_finite_differences(x, h=1e-6):
    return (reference.gelu(x + h) - reference.gelu(x - h)) / (2 * h)


def test_the_closed_form_is_what_runs_on_tensorflow():
    assert closed_form_gradients()


@pytest.mark.parametrize("jit", [False, True])
def test_value_and_derivative_match_float64_brute_force(jit):
    y, g = value_and_gradient(gelu, X.astype("float32"), jit=jit)
    np.testing.assert_allclose(y, reference.gelu(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, gelu_derivative_by_finite_differences(X), rtol=1e-5, atol=1e-6)
    # known landmarks: GELU'(0) = 1/2; GELU's minimum is -0.16997 near x = -0.752; GELU' has its
    # minimum Phi(-sqrt 2) - sqrt(2) phi(sqrt 2) = -0.12890 at x = -sqrt(2) (samples come within 0.02)
    assert g[np.argmin(np.abs(X))] == pytest.approx(0.5, abs=1e-6)
    assert y.min() == pytest.approx(-0.16997, abs=1e-3)
    assert g.min() == pytest.approx(-0.12890, abs=1e-4)


def test_matches_keras_exact_gelu_and_its_autodiff():
    x = X.astype("float32")
    y, g = value_and_gradient(gelu, x)
    y_keras, g_keras = value_and_gradient(lambda v: keras.activations.gelu(v, approximate=False), x)
    np.testing.assert_allclose(y, y_keras, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, g_keras, rtol=1e-5, atol=1e-6)


def test_bfloat16_input_is_computed_in_float32_and_returned_in_bfloat16():
    x = tf.constant(X, tf.bfloat16)
    exact = np.asarray(tf.cast(x, tf.float64))
    y, g = value_and_gradient(gelu, x)
    assert gelu(x).dtype == tf.bfloat16
    # one bfloat16 rounding of the float32 result (8 significant bits); in the negative tail, where
    # |GELU| < 1e-5, the float32 sum 1 + erf(x / sqrt 2) keeps steps of 2^-24 times |x| / 2 <= 4.5,
    # as in PyTorch's erf form
    np.testing.assert_allclose(y, reference.gelu(exact), rtol=2**-8, atol=1e-6)
    np.testing.assert_allclose(g, gelu_derivative_by_finite_differences(exact), rtol=2**-8, atol=2**-9)


def test_switch_off_gives_the_plain_formula(monkeypatch):
    monkeypatch.setenv("TFVIT_CLOSED_FORM_GRADIENTS", "0")
    assert not closed_form_gradients()
    y, g = value_and_gradient(gelu, X.astype("float32"))
    np.testing.assert_allclose(g, gelu_derivative_by_finite_differences(X), rtol=1e-5, atol=1e-6)
    assert math.isclose(float(y[np.argmax(X)]), 9.0, rel_tol=1e-6)
