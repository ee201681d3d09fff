"""tfvit.data.augment through load(): each augmentation checked against its definition, on the generated
owners'-format images (fixture ``owner_data``: noisy, asymmetric, so every crop and mirror image is distinct).

With ``shuffle=False`` and ``normalize=False`` a batch holds the first examples of ``load_arrays`` in order,
scaled to [0, 1], so every output can be compared with the original image it came from.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.data import augment, load, load_arrays

from tests.data.cifar100_files import write_cifar100


def first_batch(owner_data, name, augmentations, batch=32, **kwargs):
    images, labels = load_arrays(name, "train", data_dir=owner_data, limit=batch)
    x, y = next(iter(load(name, "train", batch, data_dir=owner_data, limit=batch, augment=augmentations,
                          shuffle=False, normalize=False, **kwargs)))
    return images.astype(np.float64), labels, x.numpy().astype(np.float64) * 255, y.numpy()


def windows(image, padding=4, mirrored=True):
    """Every crop of the zero-padded image (and of its mirror image): {(dy, dx, mirrored): crop}."""
    h, w, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    found = {}
    for flip in (False, True) if mirrored else (False,):
        source = padded[:, ::-1] if flip else padded
        for dy in range(2 * padding + 1):
            for dx in range(2 * padding + 1):
                found[dy, dx, flip] = source[dy:dy + h, dx:dx + w]
    return found


@pytest.mark.parametrize("name, mirrors", [("cifar10", True), ("mnist", False)])
def test_crop_flip_is_a_window_of_the_zero_padded_image(owner_data, name, mirrors):
    images, labels, out, y = first_batch(owner_data, name, "crop_flip")
    np.testing.assert_array_equal(y, labels)
    used = set()
    for original, augmented in zip(images, out):
        matches = [k for k, crop in windows(original, mirrored=mirrors).items()
                   if np.allclose(crop, augmented, atol=1e-3)]
        assert matches, "an output that is no window of the padded (mirrored) original"
        used.update(matches)
    assert len({(dy, dx) for dy, dx, _ in used}) > 5  # random offsets, not always the centre (4, 4)
    # CIFAR images are mirrored about half of the time; digits never (a mirrored digit is no digit), so each
    # MNIST output is an unmirrored window.
    if mirrors:
        assert {flip for *_, flip in used} == {False, True}


def test_randaugment_changes_images_reproducibly_and_keeps_the_range(owner_data):
    images, labels = load_arrays("cifar10", "train", data_dir=owner_data, limit=16)
    options = dict(data_dir=owner_data, limit=16, augment="randaugment", shuffle=False, normalize=False)
    dataset = load("cifar10", "train", 16, **options)
    (x0, y0), = [(x.numpy() * 255, y.numpy()) for x, y in dataset]
    (x1, _), = [(x.numpy() * 255, y.numpy()) for x, y in dataset]  # the second pass is epoch 1
    assert x0.shape == images.shape and 0 <= x0.min() and x0.max() <= 255 + 1e-3
    np.testing.assert_array_equal(y0, labels)
    assert (np.abs(x0 - images).reshape(16, -1).max(axis=1) > 1).mean() > 0.5
    assert not np.array_equal(x0, x1)
    # A separate load call at epoch 1 (a resumed run) reproduces the second pass exactly.
    (again, _), = [(x.numpy() * 255, y) for x, y in load("cifar10", "train", 16, epoch=1, **options)]
    np.testing.assert_array_equal(again, x1)


def test_randaugment_switch_gives_exactly_the_keras_layers_result():
    """tfvit runs only the chosen operations (tf.switch_case); Keras computes all eleven and selects with `where`."""
    rand_augment = augment.RandAugment()
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32"))
    rand_augment.layer.keyed_seeds.key, rand_augment.layer.keyed_seeds.draws = augment.derive_key(0, 0), 0
    transformation = rand_augment.layer.get_random_transformation(images)
    for first in range(0, 11, 2):  # operation pairs (0, 1), (2, 3), ..., (10, 0): every operation once
        transformation["layer_idxes"] = tf.constant([first, (first + 1) % 11])
        np.testing.assert_array_equal(rand_augment.layer.transform_images(images, transformation),
                                      keras.layers.RandAugment.transform_images(rand_augment.layer, images,
                                                                                transformation))


def assert_labels_mixed(y, labels, lam):
    """Row i is lam * one_hot(label i) + (1 - lam) * one_hot(label of the partner at the mirrored position)."""
    eye = np.eye(10, dtype=np.float32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, lam * eye[labels] + (1 - lam) * eye[labels[::-1]], atol=1e-6)


def test_mixup_mixes_each_image_with_its_partner_in_the_label_proportion(owner_data):
    images, labels, out, y = first_batch(owner_data, "cifar10", "mixup", batch=16)
    first_mixed = np.nonzero(labels != labels[::-1])[0][0]
    lam = y[first_mixed, labels[first_mixed]]
    assert 0 < lam < 1
    assert_labels_mixed(y, labels, lam)  # one lambda for the whole batch
    np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], atol=2e-3)


def test_cutmix_pastes_one_rectangle_and_weights_labels_by_its_area(owner_data):
    images, labels, out, y = first_batch(owner_data, "cifar10", "cutmix", batch=16, seed=3)
    partner = images[::-1]
    from_partner = ~np.isclose(out, images, atol=1e-3)
    rows, cols = np.nonzero(from_partner.any(axis=(0, 3)))
    box = np.zeros((32, 32), bool)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    assert 0 < box.mean() < 1
    # The same rectangle in every image, all of it from the partner, nothing outside it; labels by its area.
    np.testing.assert_allclose(out, np.where(box[None, :, :, None], partner, images), atol=1e-3)
    assert_labels_mixed(y, labels, 1 - box.mean())


def test_mixup_and_cutmix_together_pick_one_per_batch_and_one_hot_follows_label_mode(tmp_path):
    write_cifar100(tmp_path, counts={"train": 64, "test": 1})
    seen = set()
    for x, y in load("cifar100", "train", 8, data_dir=tmp_path, augment=["mixup", "cutmix"], label_mode="coarse",
                     normalize=False):
        assert x.shape == (8, 32, 32, 3) and y.shape == (8, 20)
        np.testing.assert_allclose(y.numpy().sum(axis=1), 1, atol=1e-6)
        # cutmix keeps every pixel of one of the two images, mixup (0 < lam < 1) blends them.
        pixels = x.numpy() * 255
        seen.add(bool(np.all(np.abs(pixels - np.rint(pixels)) < 1e-3)))
    assert seen == {True, False}


def test_parse_augment():
    assert augment.parse_augment(None) == ()
    assert augment.parse_augment("mixup") == ("mixup",)
    assert augment.parse_augment(["crop_flip", "cutmix", "crop_flip"]) == ("crop_flip", "cutmix")
    with pytest.raises(ValueError, match="augment must be None, a name or a list of names"):
        augment.parse_augment(3)
