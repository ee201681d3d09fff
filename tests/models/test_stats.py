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
