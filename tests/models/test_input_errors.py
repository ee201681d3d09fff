"""What a user gets wrong when feeding a tfvit model ends in one clear message, not a wrong result or a graph trace:
float images holding unscaled 0..255 pixels warn once per model (as integer images do) and normalised images from
tfvit.data.load never do; channels-first (NCHW) batches are named as such; labels outside [0, num_classes) and
labels of the wrong kind for the compiled loss (one-hot for a sparse loss, class indices for a one-hot loss) raise
one ValueError from ``fit`` and ``evaluate``, for arrays (checked up front) and datasets (translated from the step)."""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvit
from tfvit.data import dataset_info, load
from tfvit.data.info import DATASETS
from tfvit.models import ResNet, SwinTransformer, VisionTransformer
from tfvit.models.base import UNSCALED

TINY_VIT = dict(image_size=8, in_channels=1, patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3)
TINY_SWIN = dict(image_size=8, in_channels=1, patch_size=2, window_size=2, embed_dim=8, depths=(1,), num_heads=(2,),
                 num_classes=3)
TINY_RESNET = dict(image_size=8, in_channels=1, depths=(1,), widths=(4,), stem="cifar", num_classes=3)
FAMILIES = [(VisionTransformer, TINY_VIT), (SwinTransformer, TINY_SWIN), (ResNet, TINY_RESNET)]
SPARSE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
ONE_HOT = keras.losses.CategoricalCrossentropy(from_logits=True)


def pixels(count=4, seed=0):
    """Float images holding 0..255 pixel values, as np.asarray(PIL image) or a uint8 array cast gives them."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, 8, 8, 1)).astype("float32")


def compiled(loss=SPARSE, **overrides):
    model = VisionTransformer(**{**TINY_VIT, **overrides})
    model.compile(optimizer="sgd", loss=loss)
    return model


# --- unscaled float images ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, config", FAMILIES)
def test_float_images_of_unscaled_pixels_warn_once_per_model(cls, config):
    model = cls(**config)
    x = pixels()
    with pytest.warns(UserWarning, match=rf"^{cls.__name__} '{model.name}' got float32 images with values up to "
                                         rf"{x.max():.4g}: they look like unscaled pixels \(0\.\.255\).*"
                                         r"\(x / 255 - mean\) / std.*tfvit\.data\.load.*Shown once per model"):
        model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x)  # once per model
        model(tf.constant(x))
    with pytest.warns(UserWarning, match="float64 images with values up to"):
        cls(**config)(x.astype("float64"))  # another model warns again
    with pytest.warns(UserWarning, match="float32 images with values up to"):
        cls(**config)(tf.constant(x))  # an eager tensor's values are read too


def test_fit_predict_and_evaluate_warn_for_unscaled_float_arrays():
    """fit, predict and evaluate run the model on symbolic tensors, where no values can be read: they look at the
    array they are given."""
    x, y = pixels(), np.array([0, 1, 2, 0])
    for run in (lambda m: m.fit(x, y, epochs=1, verbose=0), lambda m: m.predict(x, verbose=0),
                lambda m: m.evaluate(x, y, verbose=0)):
        model = compiled()
        with pytest.warns(UserWarning, match="got float32 images with values up to 255: they look like unscaled"):
            run(model)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run(model)


def test_normalised_images_and_traced_graphs_never_warn(owner_data):
    # The bound is far above what tfvit.data's normalisation reaches for any dataset it knows: the reference is
    # the extreme pixels 0 and 255 normalised with each dataset's statistics.
    reach = max(max((1 - m) / s, m / s) for name in DATASETS for m, s in zip(dataset_info(name).mean,
                                                                            dataset_info(name).std))
    assert reach < 4 < UNSCALED
    model = VisionTransformer(**{**TINY_VIT, "image_size": 28})
    model.compile(optimizer="sgd", loss=SPARSE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for augment in (None, "randaugment"):
            images, labels = next(iter(load("mnist", "train", 64, data_dir=owner_data, limit=64, augment=augment)))
            model(images)
            model(images.numpy())
            model.predict(images.numpy(), verbose=0)
        model.fit(images.numpy(), labels.numpy() % 3, epochs=1, verbose=0)
        unscaled = pixels()
        model = VisionTransformer(**TINY_VIT)
        # Traced without values: nothing is read from (or added to) the graph, and nothing warns.
        graph_out = tf.function(lambda v: model(v))(tf.constant(unscaled))
        model(np.zeros((2, 8, 8, 1), "float32"))  # zeros and a few units of normalised values are fine
        model(np.full((2, 8, 8, 1), UNSCALED, "float32"))
    with pytest.warns(UserWarning, match="look like unscaled pixels"):  # an eager call has values to read
        np.testing.assert_allclose(graph_out, model(unscaled), atol=1e-5)


# --- channels-first batches -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, config", [
    ((2, 3, 32, 32), dict(image_size=32, in_channels=3)),
    ((2, 1, 28, 28), dict(image_size=28, in_channels=1)),
    ((2, 3, 64, 64), dict(image_size=32, in_channels=3)),   # another size too: the last axis is no channel count
])
def test_channels_first_images_are_named_with_the_transpose_that_fixes_them(shape, config):
    model = VisionTransformer(**{**TINY_VIT, **config})
    x = np.zeros(shape, "float32")
    with pytest.raises(ValueError, match=rf"^VisionTransformer '{model.name}' expects channels-last images \(batch, "
                                         rf"height, width, channels\), got shape {re.escape(str(shape))}, which looks "
                                         r"channels-first \(NCHW.*x\.transpose\(0, 2, 3, 1\).*"
                                         r"keras\.ops\.transpose\(x, \(0, 2, 3, 1\)\)"):
        model(x)
    fixed = x.transpose(0, 2, 3, 1)
    if fixed.shape[1:3] == model.image_size:
        assert model(fixed).shape == (2, 3)


def test_other_channel_mismatches_keep_their_message():
    model = VisionTransformer(**{**TINY_VIT, "image_size": 32, "in_channels": 3})
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\), got 4 .*Build the model with in_channels=4"):
        model(np.zeros((2, 32, 32, 4), "float32"))


# --- labels that do not fit the loss --------------------------------------------------------------------------------

def test_out_of_range_labels_name_the_value_the_range_and_num_classes():
    model = tfvit.create_model("vit_mnist_patch4_28", num_classes=10)
    model.compile(optimizer="adam", loss=SPARSE)
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype("float32")
    y = np.array([0, 3, 10, 9, 2, 10, 1, 4])
    bad = np.unique(y[(y < 0) | (y >= 10)])  # the reference: the labels outside [0, 10)
    message = (rf"^VisionTransformer '{model.name}'\.fit: labels hold {', '.join(map(str, bad))}, outside the valid "
               r"range 0\.\.9 of a model with num_classes=10 \(loss SparseCategoricalCrossentropy takes class "
               r"indices in \[0, num_classes\)\)\. Fix the labels, or build the model with num_classes=11")
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\.fit \(validation_data\): labels hold -1, outside the valid range 0\.\.9"):
        model.fit(x, y % 10, validation_data=(x, -np.ones(8, int)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\.evaluate: labels hold 10, outside the valid range 0\.\.9"):
        model.evaluate(x, tf.constant(y), verbose=0)


@pytest.mark.parametrize("run", ["fit", "evaluate"])
def test_out_of_range_labels_in_a_dataset_raise_one_clear_error_without_the_graph_trace(run):
    model = compiled()
    x = np.zeros((4, 8, 8, 1), "float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 2, 3]))).batch(4)
    with pytest.raises(ValueError, match=rf"^VisionTransformer '{model.name}'\.{run}: labels hold 3, outside the "
                                         r"valid range 0\.\.2 of a model with num_classes=3") as raised:
        getattr(model, run)(data, verbose=0)
    assert raised.value.__suppress_context__ and raised.value.__cause__ is None  # raised from None
    assert "Graph execution error" not in str(raised.value)


def test_one_hot_labels_for_a_sparse_loss_and_indices_for_a_one_hot_loss_say_what_fits():
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.array([0, 1, 2, 0])
    one_hot = keras.utils.to_categorical(y, 3)
    with pytest.raises(ValueError, match=r"\.fit: labels of shape \(4, 3\) were given to loss "
                                         r"SparseCategoricalCrossentropy, which takes one class index per image "
                                         r"\(labels of shape \(4,\)\)\. These look one-hot.*CategoricalCrossentropy.*"
                                         r"np\.argmax\(labels, axis=-1\)"):
        compiled(SPARSE).fit(x, one_hot, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\.evaluate: labels of shape \(4,\) were given to loss "
                                         r"CategoricalCrossentropy, which takes one-hot labels of shape \(4, 3\)\. "
                                         r"These look like class indices.*SparseCategoricalCrossentropy.*"
                                         r"keras\.utils\.to_categorical\(labels, 3\)"):
        compiled(ONE_HOT).evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"labels of shape \(4, 5\) were given to loss categorical_crossentropy.*"
                                         r"num_classes=3"):
        compiled("categorical_crossentropy").fit(x, np.eye(5)[:4], epochs=1, verbose=0)
    # What the messages say to do works.
    compiled(SPARSE).fit(x, np.argmax(one_hot, axis=-1), epochs=1, verbose=0)
    compiled(ONE_HOT).fit(x, keras.utils.to_categorical(y, 3), epochs=1, verbose=0)


@pytest.mark.parametrize("loss, labels, expected", [
    (SPARSE, np.eye(3, dtype="float32")[[0, 1, 2, 0]], r"labels of shape \(None, 3\) were given to loss "
                                                       r"SparseCategoricalCrossentropy.*look one-hot"),
    (ONE_HOT, np.array([0, 1, 2, 0]), r"labels of shape \(None,\) were given to loss CategoricalCrossentropy.*"
                                      r"look like class indices"),
])
def test_labels_of_the_wrong_kind_in_a_dataset_are_explained(loss, labels, expected):
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 1), "float32"), labels)).batch(4)
    with pytest.raises(ValueError, match=expected) as raised:
        compiled(loss).fit(data, epochs=1, verbose=0)
    assert raised.value.__suppress_context__


def test_the_ignored_class_of_a_sparse_loss_is_a_valid_label():
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    x = np.zeros((4, 8, 8, 1), "float32")
    compiled(loss).fit(x, np.array([0, -1, 2, 1]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels hold 3, outside the valid range 0\.\.2"):
        compiled(loss).fit(x, np.array([0, -1, 3, 1]), epochs=1, verbose=0)


def test_other_errors_and_losses_pass_through():
    model = compiled(keras.losses.MeanSquaredError())
    model.fit(np.zeros((4, 8, 8, 1), "float32"), np.zeros((4, 3), "float32"), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="must call `compile"):
        VisionTransformer(**TINY_VIT).fit(np.zeros((4, 8, 8, 1), "float32"), np.array([0, 1, 2, 0]), verbose=0)
