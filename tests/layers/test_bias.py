"""tfvit's bias addition (Dense, Conv2D) under bfloat16: its bias gradient against float64 sums.

TensorFlow's own CPU kernel for this gradient accumulates bfloat16 in bfloat16 and returns 256 for
a sum of 8320 ones; tfvit.layers.bias replaces it (see its docstring)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit import layers

ROWS = (128, 65)  # a CIFAR ViT batch: 8320 tokens


def bias_and_kernel_gradients(layer, x, upstream):
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return [np.asarray(g, np.float64) for g in tape.gradient(loss, [layer.bias, layer.kernel])]


@pytest.mark.parametrize("upstream_kind", ["ones", "normal"])
def test_dense_bias_gradient_is_the_float64_sum_under_bfloat16(upstream_kind):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(*ROWS, 8)).astype("float32")
    upstream = np.ones((*ROWS, 4)) if upstream_kind == "ones" else rng.normal(size=(*ROWS, 4))
    # the upstream gradient the layer sees is the bfloat16 rounding of this one
    exact = tf.cast(tf.cast(upstream, tf.bfloat16), tf.float64).numpy().sum(axis=(0, 1))
    layer = layers.Dense(4)
    layer.build(x.shape)
    bias_grad, kernel_grad = bias_and_kernel_gradients(layer, x, tf.constant(upstream, tf.float32))
    # one rounding of the sum to bfloat16 (8 significant bits), plus float32 summation order
    np.testing.assert_allclose(bias_grad, exact, rtol=2 ** -8, atol=1e-3 * np.abs(exact).max())
    if upstream_kind == "ones":
        assert np.all(bias_grad == 8320.0)


def test_conv_bias_gradient_is_the_float64_sum_under_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = layers.Conv2D(4, 4, strides=4)
    x = np.ones((128, 32, 32, 3), "float32")
    layer.build(x.shape)
    bias_grad, _ = bias_and_kernel_gradients(layer, x, tf.ones((128, 8, 8, 4)))
    assert np.all(bias_grad == 128 * 8 * 8)


def test_outputs_equal_keras_layers_with_the_same_weights():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype("float32")
    for ours, theirs in ((layers.Dense(5, activation="relu"), keras.layers.Dense(5, activation="relu")),
                         (layers.Conv2D(5, 2, strides=2), keras.layers.Conv2D(5, 2, strides=2))):
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
        np.testing.assert_array_equal(np.asarray(ours(x), np.float32), np.asarray(theirs(x), np.float32))


@pytest.mark.parametrize("policy, switch", [("float32", None), ("mixed_float16", None), ("mixed_bfloat16", "0")])
def test_keras_path_where_it_is_exact_or_switched_off(policy, switch, monkeypatch):
    if switch is not None:
        monkeypatch.setenv("TFVIT_CLOSED_FORM_GRADIENTS", switch)
    keras.mixed_precision.set_global_policy(policy)
    calls = []
    original = layers.bias.bias_add
    monkeypatch.setattr(layers.bias, "bias_add", lambda *a: calls.append(1) or original(*a))
    layer = layers.Dense(3)
    layer(np.ones((2, 4), "float32"))
    assert calls == []
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    monkeypatch.delenv("TFVIT_CLOSED_FORM_GRADIENTS", raising=False)
    layers.Dense(3)(np.ones((2, 4), "float32"))
    assert calls == [1]


def test_vit_bias_gradients_under_bfloat16_follow_float32():
    """End to end: a CIFAR-sized ViT's qkv and fc1 bias gradients under mixed_bfloat16 stay within a few
    percent of the float32 model's (with TensorFlow's kernel they are off by a large factor)."""
    import tfvit

    rng = np.random.default_rng(2)
    x = rng.random((64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 64)
    grads = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        model = tfvit.create_model("vit_cifar_patch4_32", depth=1, drop_path_rate=0.0)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), from_logits=True)
            loss = tf.reduce_mean(loss)
        biases = [w for w in model.trainable_weights
                  if w.path.endswith("bias") and ("qkv" in w.path or "fc1" in w.path)]
        grads[policy] = [np.asarray(g, np.float64) for g in tape.gradient(loss, biases)]
    assert len(grads["float32"]) == 2
    for got, want in zip(grads["mixed_bfloat16"], grads["float32"]):
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05


@pytest.mark.parametrize("settings", [dict(strides=2, padding="same"), dict(dilation_rate=(2, 1), padding="valid"),
                                      dict(groups=2, strides=(1, 2), padding="same")])
def test_channels_first_convolution_is_the_channels_last_one_transposed(settings):
    """Any CPU (TensorFlow's own CPU kernel takes NHWC only): against Keras's channels-last Conv2D with the
    same weights, on the transposed images; gradients too."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 9, 4)).astype("float32")  # NHWC
    first = layers.Conv2D(6, (3, 2), data_format="channels_first", **settings)
    last = keras.layers.Conv2D(6, (3, 2), data_format="channels_last", **settings)
    nchw = tf.constant(x.transpose(0, 3, 1, 2))
    first.build(nchw.shape)
    last.build(x.shape)
    first.kernel.assign(rng.normal(size=first.kernel.shape).astype("float32"))
    first.bias.assign(rng.normal(size=first.bias.shape).astype("float32"))
    last.set_weights(first.get_weights())
    expected = last(x).numpy()
    weights = tf.constant(rng.normal(size=expected.shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(nchw)
        y = first(nchw)
        loss = tf.reduce_sum(y * tf.transpose(weights, (0, 3, 1, 2)))
    np.testing.assert_allclose(y.numpy().transpose(0, 2, 3, 1), expected, rtol=1e-5, atol=1e-5)
    with tf.GradientTape() as reference_tape:
        x_tensor = tf.constant(x)
        reference_tape.watch(x_tensor)
        reference = tf.reduce_sum(last(x_tensor) * weights)
    gradient = tape.gradient(loss, nchw)
    np.testing.assert_allclose(gradient.numpy().transpose(0, 2, 3, 1), reference_tape.gradient(reference, x_tensor),
                               rtol=1e-5, atol=1e-5)
