"""tfvit.vis.scores: the logits model is cached without keeping its model alive, and batching does not change logits."""

import gc
import weakref

import keras
import numpy as np

from tfvit.vis.scores import fill_values, logits_model, predict_logits


def dense_model(activation=None):
    inputs = keras.Input((4, 4, 2))
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation)(keras.layers.Flatten()(inputs)))


def test_a_model_that_outputs_logits_is_its_own_logits_model_and_is_freed():
    model = dense_model()
    assert logits_model(model) is model
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the cache must not hold the model (a value referring to its weak key would)


def test_batched_logits_equal_one_call_and_softmax_is_bypassed():
    model = dense_model("softmax")
    images = np.random.default_rng(0).normal(size=(7, 4, 4, 2)).astype(np.float32)
    kernel, bias = (w.numpy() for w in model.layers[-1].weights)
    expected = images.reshape(7, -1) @ kernel + bias
    np.testing.assert_allclose(predict_logits(logits_model(model), images, 3), expected, atol=1e-5)
    np.testing.assert_allclose(fill_values("mean", images), images.mean(axis=(1, 2)))
