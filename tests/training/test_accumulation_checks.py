"""GradientAccumulationModel says what the user would otherwise find out late or never: labels that do not fit the
compiled loss raise the same clear ValueError as tfvit's models do (not a TensorFlow graph trace); wrapping with
accum > 1 a model with trainable BatchNorm warns once that the accumulation is not exact (and the reference shows
that it is not); ``tfvit.stats`` of the wrapper reports the wrapped model."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvit
from tfvit.models import ResNet, VisionTransformer
from tfvit.training import GradientAccumulationModel

TINY_VIT = dict(image_size=8, in_channels=1, patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3)
TINY_RESNET = dict(image_size=8, in_channels=1, depths=(1,), widths=(4,), stem="cifar", num_classes=3)
SPARSE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def wrapped(model, accum=2, loss=SPARSE):
    wrapper = GradientAccumulationModel(model, accum=accum)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    return wrapper


def test_out_of_range_labels_raise_one_clear_error():
    wrapper = wrapped(VisionTransformer(**TINY_VIT))
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.array([0, 5, 2, 1])
    where = rf"GradientAccumulationModel '{wrapper.name}' \(model '{wrapper.model.name}'\)"
    with pytest.raises(ValueError, match=rf"^{where}\.fit: labels hold 5, outside the valid range 0\.\.2 of a model "
                                         r"with num_classes=3 .*build the model with num_classes=6"):
        wrapper.fit(x, y, epochs=1, verbose=0)
    out_of_range = r"labels hold 5, outside the valid range 0\.\.2"
    with pytest.raises(ValueError, match=rf"^{where}\.evaluate: {out_of_range}") as raised:
        wrapper.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), verbose=0)
    assert raised.value.__suppress_context__ and "Graph execution error" not in str(raised.value)
    with pytest.raises(ValueError, match=rf"^{where}\.fit: {out_of_range}") as raised:
        wrapper.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0)
    assert raised.value.__suppress_context__


def test_one_hot_labels_for_a_sparse_loss_say_what_fits():
    wrapper = wrapped(VisionTransformer(**TINY_VIT))
    with pytest.raises(ValueError, match=r"\.fit: labels of shape \(4, 3\) were given to loss "
                                         r"SparseCategoricalCrossentropy.*look one-hot.*np\.argmax"):
        wrapper.fit(np.zeros((4, 8, 8, 1), "float32"), np.eye(3)[[0, 1, 2, 0]], epochs=1, verbose=0)
    wrapper = wrapped(VisionTransformer(**TINY_VIT), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"\.fit: labels of shape \(4,\) were given to loss CategoricalCrossentropy.*"
                                         r"to_categorical\(labels, 3\)"):
        wrapper.fit(np.zeros((4, 8, 8, 1), "float32"), np.array([0, 1, 2, 0]), epochs=1, verbose=0)


def full_batch_and_accumulated_updates(make, accum, x, y):
    """The weights after one SGD step on the whole batch and after one accumulated step, from the same start."""
    results = []
    for steps in (None, accum):
        keras.utils.set_random_seed(0)
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trainer = model if steps is None else GradientAccumulationModel(model, accum=steps)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5), loss=SPARSE)
        trainer.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        results.append([np.asarray(w) for w in model.trainable_weights])
    return results


def test_batch_norm_with_accum_warns_once_that_accumulation_is_not_exact():
    make = lambda: ResNet(**TINY_RESNET)  # noqa: E731
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    # The reference: the accumulated update is not the full batch's (BatchNorm normalises each half by its own
    # statistics), which is what the warning says.
    full, accumulated = full_batch_and_accumulated_updates(make, 2, x, y)
    assert max(np.abs(a - b).max() for a, b in zip(full, accumulated)) > 1e-4
    model = make()
    count = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers())
    assert count == 3  # the stem's and the block's two
    with pytest.warns(UserWarning, match=rf"^GradientAccumulationModel\(accum=2\): accumulation over model "
                                         rf"'{model.name}' is not exact: its 3 trainable BatchNormalization layer\(s\) "
                                         r"normalise each micro-batch of ceil\(B / 2\) examples by that micro-batch's "
                                         r"own mean and variance.*accum=1 with the whole batch.*LayerNormalization or "
                                         r"GroupNormalization") as record:
        GradientAccumulationModel(model, accum=2)
    assert len([w for w in record if "BatchNormalization" in str(w.message)]) == 1


def test_no_batch_norm_warning_where_accumulation_is_exact():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped(ResNet(**TINY_RESNET), accum=1)  # no micro-batches
        wrapped(VisionTransformer(**TINY_VIT), accum=4)  # LayerNorm
        frozen = ResNet(**TINY_RESNET)
        for layer in frozen._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # inference mode: the moving statistics, the same for every micro-batch
        wrapped(frozen, accum=2)


def test_stats_of_a_wrapper_are_those_of_the_wrapped_model():
    model = VisionTransformer(**TINY_VIT)
    assert tfvit.stats(GradientAccumulationModel(model, accum=2)) == tfvit.stats(model)
    assert tfvit.models.count_macs(GradientAccumulationModel(model, accum=2)) == tfvit.models.count_macs(model)


def test_stats_of_a_model_without_an_input_asks_for_the_input_shape():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 12)))

    model = Subclassed()
    model(np.zeros((1, 2, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"^stats: model '.*' \(Subclassed\) has no input of its own .*pass "
                                         r"input_shape=\(height, width, channels\)"):
        tfvit.stats(model)
    assert tfvit.stats(model, input_shape=(2, 2, 3)).macs == 12 * 3
