"""Small models whose saliency maps have closed forms, for the perturbation and path method tests."""

import keras
import numpy as np


def linear_model(shape=(8, 10, 2), classes=3, softmax=False, seed=0):
    """logits = W . flatten(x) + b as a functional model (optionally followed by a Softmax layer, which the
    saliency methods must bypass). Returns (model, W (H, W, C, K) float64, b (K,) float64)."""
    inputs = keras.Input(shape, name="pixels")
    dense = keras.layers.Dense(classes, name="head")
    out = dense(keras.layers.Flatten()(inputs))
    if softmax:
        out = keras.layers.Softmax(name="probabilities")(out)
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(int(np.prod(shape)), classes)).astype("float32")
    bias = rng.normal(size=classes).astype("float32")
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    return model, kernel.astype(np.float64).reshape(*shape, classes), bias.astype(np.float64)


def linear_logits(images, kernel, bias):
    return np.einsum("bhwc,hwck->bk", np.asarray(images, np.float64), kernel) + bias


def small_cnn(shape=(8, 8, 3), classes=3, softmax=False, seed=0):
    """A smooth nonlinear model (tanh conv, average pooling, gelu dense): no closed form, but differentiable."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="tanh")(inputs)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Dense(8, activation="gelu")(keras.layers.Flatten()(x))
    out = keras.layers.Dense(classes)(x)
    if softmax:
        out = keras.layers.Softmax()(out)
    return keras.Model(inputs, out)
