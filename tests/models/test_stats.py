import keras

from tfvit.models import count_macs, stats


def test_macs_of_conv_dense_and_einsum_counted_by_hand():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)        # 8*8*4 outputs x 3*3*3 = 6912
    x = keras.layers.Reshape((64, 4))(x)
    x = keras.layers.Dense(5)(x)                                   # 64*5 outputs x 4 = 1280
    scores = keras.ops.einsum("bqd,bkd->bqk", x, x)                # 64*64 x 5 = 20480
    x = keras.ops.mean(scores, axis=1)
    outputs = keras.layers.Dense(2)(x)                             # 2 x 64 = 128
    model = keras.Model(inputs, outputs)
    assert count_macs(model) == 6912 + 1280 + 20480 + 128
    result = stats(model)
    assert result.params == (3 * 3 * 3 * 4 + 4) + (4 * 5 + 5) + (64 * 2 + 2)
    assert result.input_shape == (8, 8, 3)


def test_trainable_and_total_parameters_differ_for_frozen_layers():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    result = stats(model)
    assert result.params == 15 + 12 and result.trainable_params == 15 + 6


def test_products_inside_called_graph_functions_are_counted():
    """A layer may run part of its work as a nested tf.function (tfvit's XLA clusters do): its products count."""
    import tensorflow as tf

    product = tf.function(lambda a, b: tf.matmul(a, b))
    twice = tf.function(lambda a, b: product(product(a, b), tf.transpose(b)), jit_compile=True)

    class Nested(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 3))

        def call(self, x):
            # on the weights, whose shapes are static in every trace: (3, 6) @ (6, 3), then (3, 3) @ (3, 6)
            return x + tf.reduce_sum(twice(tf.transpose(self.w), tf.identity(self.w)) * 0.0)

    inputs = keras.Input((6,))
    model = keras.Model(inputs, Nested()(inputs))
    assert count_macs(model) == 3 * 6 * 3 + 3 * 3 * 6


def test_a_loop_is_refused_rather_than_counted_once():
    import pytest
    import tensorflow as tf

    class Loop(keras.layers.Layer):
        def call(self, x):
            return tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, tf.matmul(y, tf.eye(4))), (0, x))[1]

    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="loops"):
        count_macs(keras.Model(inputs, Loop()(inputs)))


def test_the_xla_clusters_add_no_multiply_adds(monkeypatch):
    """LayerNorm's cluster writes its sums as products with a constant vector; they are not the model's MACs."""
    import tfvit

    counts = {}
    for setting in ("none", "all"):
        monkeypatch.setenv("TFVIT_XLA_CLUSTERS", setting)
        counts[setting] = count_macs(tfvit.create_model("vit_cifar_patch4_32", depth=1))
    assert counts["all"] == counts["none"]
