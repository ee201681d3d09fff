"""tfvit.data.load: shapes, channel conversion, resizing, normalisation, order and reproducibility.

On the generated owners'-format datasets (fixture ``owner_data``). Expected values are computed in numpy from
``load_arrays`` (and the generator's arrays) and the published statistics written out here; that those statistics
are the real training sets' is a real-data extra.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfvit.data import dataset_info, load, load_arrays

from tests import owner_files

CIFAR10_MEAN, CIFAR10_STD = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2023, 0.1994, 0.2010])
LUMA = np.array([0.2989, 0.5870, 0.1140])


def collect(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def test_shapes_and_dtypes_with_resizing_and_channel_conversion(owner_data):
    x, y = next(iter(load("mnist", "test", 32, data_dir=owner_data, image_size=40, channels=3, limit=64)))
    assert x.shape == (32, 40, 40, 3) and x.dtype == tf.float32 and y.shape == (32,) and y.dtype == tf.int64
    x, _ = next(iter(load("cifar10", "train", 16, data_dir=owner_data, image_size=(24, 20), channels=1, limit=64)))
    assert x.shape == (16, 24, 20, 1)
    dataset = load("cifar10", "train", 100, data_dir=owner_data)
    assert dataset.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    assert int(dataset.cardinality()) == 6  # ceil(512 / 100): Keras can show epoch progress


def test_channel_conversion_values(owner_data):
    gray, _ = load_arrays("mnist", "test", data_dir=owner_data, limit=8)
    x, _ = next(iter(load("mnist", "test", 8, data_dir=owner_data, channels=3, normalize=False)))
    np.testing.assert_allclose(x.numpy(), np.repeat(gray / 255.0, 3, axis=-1), atol=1e-6)
    rgb, _ = load_arrays("cifar10", "test", data_dir=owner_data, limit=8)
    x, _ = next(iter(load("cifar10", "test", 8, data_dir=owner_data, channels=1, normalize=False)))
    np.testing.assert_allclose(x.numpy(), (rgb @ LUMA)[..., None] / 255.0, atol=1e-5)


def bilinear_half_pixel(images, out_h, out_w):
    """Reference bilinear resize with half-pixel centres (TF2 / PyTorch align_corners=False), for upsampling."""
    def axis_weights(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    (ylo, yhi, wy), (xlo, xhi, wx) = axis_weights(images.shape[1], out_h), axis_weights(images.shape[2], out_w)
    rows = images[:, ylo] * (1 - wy)[None, :, None, None] + images[:, yhi] * wy[None, :, None, None]
    return rows[:, :, xlo] * (1 - wx)[None, None, :, None] + rows[:, :, xhi] * wx[None, None, :, None]


def test_resize_is_bilinear(owner_data):
    images, _ = load_arrays("cifar10", "test", data_dir=owner_data, limit=4)
    x, _ = next(iter(load("cifar10", "test", 4, data_dir=owner_data, image_size=(64, 80), normalize=False)))
    np.testing.assert_allclose(x.numpy(), bilinear_half_pixel(images / 255.0, 64, 80), atol=1e-5)


def test_normalisation_uses_the_published_statistics(owner_data):
    images, _ = load_arrays("cifar10", "test", data_dir=owner_data, limit=256)
    x, _ = next(iter(load("cifar10", "test", 256, data_dir=owner_data)))
    np.testing.assert_allclose(x.numpy(), (images / 255.0 - CIFAR10_MEAN) / CIFAR10_STD, atol=1e-5)

    gray, _ = load_arrays("mnist", "test", data_dir=owner_data, limit=64)
    x, _ = next(iter(load("mnist", "test", 64, data_dir=owner_data)))
    np.testing.assert_allclose(x.numpy(), (gray / 255.0 - 0.1307) / 0.3081, atol=1e-5)
    x, _ = next(iter(load("mnist", "test", 64, data_dir=owner_data, channels=3)))
    np.testing.assert_allclose(x.numpy(), np.repeat((gray / 255.0 - 0.1307) / 0.3081, 3, axis=-1), atol=1e-5)

    # RGB -> luma: the luma-weighted statistics.
    x, _ = next(iter(load("cifar10", "test", 256, data_dir=owner_data, channels=1)))
    expected = ((images @ LUMA) / 255.0 - LUMA @ CIFAR10_MEAN) / (LUMA @ CIFAR10_STD)
    np.testing.assert_allclose(x.numpy()[..., 0], expected, atol=1e-5)
    assert dataset_info("cifar100").mean == (0.5071, 0.4865, 0.4409)


def keys_bicubic_inside(images, out_h, out_w):
    """Reference bicubic resize: Keys' cubic convolution with a = -0.5 (TensorFlow's; PyTorch uses -0.75) at
    half-pixel centres, exact wherever all four taps fall inside the image (the borders differ in how they pad)."""
    def kernel(t, a=-0.5):
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))

    def matrix(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        return kernel(src[:, None] - np.arange(n_in)[None, :])  # (n_out, n_in): rows sum to 1 inside

    return np.einsum("yh,bhwc,xw->byxc", matrix(images.shape[1], out_h), images, matrix(images.shape[2], out_w))


def test_a_checkpoints_preprocessing_replaces_the_statistics_and_the_resize(owner_data):
    from tfvit.models import Preprocessing

    images, _ = load_arrays("cifar10", "test", data_dir=owner_data, limit=4)
    inception = Preprocessing((0.5, 0.5, 0.5), (0.25, 0.5, 1.0), (32, 32), "bicubic")
    x, _ = next(iter(load("cifar10", "test", 4, data_dir=owner_data, preprocessing=inception)))
    np.testing.assert_allclose(x.numpy(), (images / 255.0 - 0.5) / np.array([0.25, 0.5, 1.0]), atol=1e-5)
    # Its size and interpolation unless image_size is given (its to_dict(), as result.json keeps it, serves too).
    at_64 = dict(inception.to_dict(), image_size=[64, 64])
    x, _ = next(iter(load("cifar10", "test", 4, data_dir=owner_data, preprocessing=at_64)))
    expected = (keys_bicubic_inside(images / 255.0, 64, 64) - 0.5) / np.array([0.25, 0.5, 1.0])
    np.testing.assert_allclose(x.numpy()[:, 3:-3, 3:-3], expected[:, 3:-3, 3:-3], atol=1e-4)
    x, _ = next(iter(load("cifar10", "test", 4, data_dir=owner_data, preprocessing=at_64, image_size=48)))
    assert x.shape == (4, 48, 48, 3)
    # MNIST for an RGB checkpoint: its three statistics need the gray channel repeated.
    with pytest.raises(ValueError, match="statistics for 3 channels but the images have 1; pass channels=3"):
        load("mnist", "test", 4, data_dir=owner_data, preprocessing=inception)
    gray, _ = load_arrays("mnist", "test", data_dir=owner_data, limit=4)
    x, _ = next(iter(load("mnist", "test", 4, data_dir=owner_data, preprocessing=inception, channels=3,
                          image_size=28)))
    np.testing.assert_allclose(x.numpy(), (np.repeat(gray, 3, -1) / 255.0 - 0.5) / np.array([0.25, 0.5, 1.0]),
                               atol=1e-5)
    with pytest.raises(ValueError, match="normalize=False"):
        load("cifar10", "test", 4, data_dir=owner_data, preprocessing=inception, normalize=False)


def test_published_statistics_are_the_real_cifar10_training_images(real_cifar10):
    """Real-data extra: the mean load() normalises with is the real training set's; the shared copy's first 1017
    images of each batch already agree to 0.01."""
    train, _ = load_arrays("cifar10", "train", data_dir=real_cifar10)
    np.testing.assert_allclose((train / 255.0).mean(axis=(0, 1, 2)), CIFAR10_MEAN, atol=0.01)
    assert dataset_info("cifar10").mean == tuple(CIFAR10_MEAN)


def test_published_statistics_are_the_real_mnist_training_images(real_mnist):
    """Real-data extra: the shared copy's first 17,435 training images agree with MNIST's statistics to 0.003."""
    train, _ = load_arrays("mnist", "train", data_dir=real_mnist)
    assert abs(train.mean() / 255 - 0.1307) < 0.003 and abs(train.std() / 255 - 0.3081) < 0.003
    assert (dataset_info("mnist").mean, dataset_info("mnist").std) == ((0.1307,), (0.3081,))


def test_fashion_mnist_statistics_match_the_full_training_set(fashion_dir):
    train, _ = load_arrays("fashion_mnist", "train")
    info = dataset_info("fashion_mnist")
    assert round(train.mean() / 255, 3) == round(info.mean[0], 3) == 0.286
    assert round(train.std() / 255, 3) == round(info.std[0], 3) == 0.353


def test_test_split_keeps_the_file_order_and_limit_takes_the_first_examples(owner_data):
    images, labels = load_arrays("cifar10", "test", data_dir=owner_data)
    np.testing.assert_array_equal(labels, owner_files.arrays("cifar10", "test")[1])  # the files' order
    got_images, got_labels = collect(load("cifar10", "test", 300, data_dir=owner_data, normalize=False))
    np.testing.assert_array_equal(np.rint(got_images * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(got_labels, labels)

    sizes = [len(y) for _, y in load("cifar10", "train", 32, data_dir=owner_data, limit=100)]
    assert sizes == [32, 32, 32, 4]
    assert [len(y) for _, y in load("cifar10", "train", 32, data_dir=owner_data, limit=100, drop_remainder=True)] \
        == [32, 32, 32]
    _, train_labels = load_arrays("cifar10", "train", data_dir=owner_data, limit=100)
    _, shuffled = collect(load("cifar10", "train", 32, data_dir=owner_data, limit=100))
    assert sorted(shuffled) == sorted(train_labels) and not np.array_equal(shuffled, train_labels)


def pass_over(dataset):
    """One full pass: the images' per-example sums identify the examples and their order."""
    return np.concatenate([x.numpy().sum(axis=(1, 2, 3)) for x, _ in dataset])


def test_shuffle_depends_only_on_seed_and_epoch(owner_data):
    def build(seed=0, epoch=0):
        return load("mnist", "train", 64, data_dir=owner_data, limit=512, seed=seed, epoch=epoch)

    tf.random.set_seed(1)  # TensorFlow's global seed must not matter
    first = build()
    epoch0, epoch1 = pass_over(first), pass_over(first)
    tf.random.set_seed(2)
    np.testing.assert_array_equal(pass_over(build()), epoch0)  # a separate load call, same batches
    assert not np.array_equal(epoch0, epoch1)  # each pass is a new epoch ...
    np.testing.assert_allclose(np.sort(epoch0), np.sort(epoch1))  # ... over the same examples
    np.testing.assert_array_equal(pass_over(build(epoch=1)), epoch1)  # a resumed run at epoch 1 sees epoch 1
    assert not np.array_equal(pass_over(build(seed=1)), epoch0)


def test_model_fit_epochs_are_the_epochs_of_load(owner_data):
    """model.fit iterates the dataset once per epoch: epoch k sees exactly load(..., epoch=k), so a run resumed at
    epoch k with a rebuilt dataset continues as the uninterrupted run would have."""
    import keras

    seen = []

    def record(images, labels):
        def keep(x):
            seen.append(x.numpy().sum(axis=(1, 2, 3)))
            return x
        traced = tf.py_function(keep, [images], tf.float32)
        traced.set_shape(images.shape)
        return traced, labels

    options = dict(data_dir=owner_data, limit=128, augment="crop_flip")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(load("mnist", "train", 64, **options).map(record), epochs=3, shuffle=False, verbose=0)
    assert len(seen) == 6
    for epoch in range(3):
        np.testing.assert_allclose(np.concatenate(seen[2 * epoch:2 * epoch + 2]),
                                   pass_over(load("mnist", "train", 64, epoch=epoch, **options)), rtol=1e-6)


def test_one_hot_labels_for_any_split(owner_data):
    _, labels = load_arrays("mnist", "test", data_dir=owner_data, limit=16)
    _, y = next(iter(load("mnist", "test", 16, data_dir=owner_data, one_hot=True)))
    np.testing.assert_array_equal(y.numpy(), np.eye(10, dtype=np.float32)[labels])
    with pytest.raises(ValueError, match=r"one_hot must be None, True or False \(True with mixup / cutmix"):
        load("mnist", augment="mixup", one_hot=False)


def test_invalid_arguments_name_the_argument_and_the_choices():
    with pytest.raises(ValueError, match=r"name must be one of cifar10, cifar100, mnist, fashion_mnist; got 'svhn'"):
        load("svhn")
    with pytest.raises(ValueError, match=r"split must be one of train, test; got 'val'"):
        load("mnist", "val")
    with pytest.raises(ValueError, match=r"channels must be None, 1 \(grayscale\) or 3 \(RGB\); got 2"):
        load("mnist", channels=2)
    with pytest.raises(ValueError, match=r"augment: unknown name\(s\) 'autoaugment'; choose from crop_flip, "
                                         r"randaugment, mixup, cutmix"):
        load("mnist", augment=["crop_flip", "autoaugment"])
    with pytest.raises(ValueError, match=r"augmentation applies to the training split only"):
        load("mnist", "test", augment="crop_flip")
    with pytest.raises(ValueError, match=r"label_mode must be 'fine' or 'coarse'; got 'super'"):
        load("cifar100", label_mode="super")
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got 0"):
        load("mnist", batch_size=0)
    with pytest.raises(ValueError, match=r"image_size must be an int or a pair of ints"):
        load("mnist", image_size="big")
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer; got -1"):
        load("mnist", seed=-1)
    with pytest.raises(ValueError, match=r"shuffle must be True or False; got 'yes'"):
        load("mnist", shuffle="yes")
