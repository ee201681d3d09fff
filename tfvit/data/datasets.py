"""``load(name, split, batch_size, ...)``: a dataset's split as a batched, normalised, optionally augmented
``tf.data.Dataset`` of ``(images, labels)``, reproducible from ``(seed, epoch)``.

The pipeline, in order: the decoded uint8 arrays (in memory: the owners' files are whole-file pickles and gzipped
IDX, not record files) -> one pass's order (a stateless permutation of the example numbers) -> per image: channel
conversion and the per-image augmentations -> batch -> resize -> scale to [0, 1] and normalise -> mixup / cutmix
-> prefetch.

Reproducibility: every random draw is a stateless function of ``seed``, the pass's epoch number and the example's
(or batch's) number, never of TensorFlow's global seed or of thread timing. The k-th pass over a dataset built with
``epoch=e`` (k = 0, 1, ...) is epoch ``e + k``: ``model.fit(load(..., epoch=0), epochs=10)`` and a run resumed
with ``load(..., epoch=7)`` at epoch 7 see the same batches from there on.
"""

import collections
import numbers
import os

import tensorflow as tf

from tfvit._validation import as_pair, positive_int
from tfvit.data import augment as augmentations
from tfvit.data.info import LUMA, channel_statistics
from tfvit.data.sources import check_request, data_folder, load_arrays

# Independent random streams drawn from the same seed.
_SHUFFLE, _PER_IMAGE, _PER_BATCH = 1, 2, 3

# Decoded arrays kept by cache=True: a training loop that rebuilds its dataset every epoch reads the files once.
_ARRAYS = collections.OrderedDict()
_ARRAYS_KEPT = 4


def load(name, split="train", batch_size=128, *, image_size=None, channels=None, normalize=True, augment=None,
         shuffle=None, seed=0, epoch=0, cache=True, prefetch=True, limit=None, data_dir=None, drop_remainder=False,
         label_mode="fine", one_hot=None, preprocessing=None):
    """A split of ``name`` (cifar10, cifar100, mnist, fashion_mnist) as a ``tf.data.Dataset`` of
    ``(images, labels)``: images float32 (B, H, W, C), labels int64 (B,), or float32 one-hot rows (B, classes)
    with ``one_hot=True``, the default when ``augment`` includes ``"mixup"`` or ``"cutmix"`` (mixed rows sum to 1;
    pass ``one_hot=True`` to the test split too, so one loss serves training and validation).

    - ``image_size``: int or (height, width) to resize to (bilinear, antialiased when shrinking), e.g. 224 for a
      pretrained model; None keeps 32x32 / 28x28. ``channels``: 3 repeats grayscale into RGB, 1 turns RGB into
      luma (ITU-R BT.601 weights); None keeps the dataset's own.
    - ``normalize``: ``(x / 255 - mean) / std`` per channel with the dataset's statistics (``dataset_info(name)``;
      after a channel conversion, the converted statistics: see ``info.channel_statistics``); False gives [0, 1].
    - ``augment`` (training split only): None, or one or more of ``"crop_flip"`` (pad 4, random crop, random
      mirror; no mirror for MNIST digits), ``"randaugment"``, ``"mixup"``, ``"cutmix"``; see ``tfvit.data.augment``.
    - ``shuffle``: default True for train, False for test (then the order of ``load_arrays``). ``seed`` and
      ``epoch`` fix the shuffle order and augmentations; each new pass over the dataset is the next epoch.
    - ``cache``: keep the decoded arrays in memory for this process, so rebuilding the dataset (e.g. each epoch
      with ``epoch=...``) does not read and decode the files again. ``prefetch``: overlap with training.
    - ``limit``: the first ``limit`` examples of the split, taken before shuffling. ``data_dir``: the folder of the
      owners' files (default ``$TFVIT_DATA_DIR``; see ``tfvit.data.sources``). ``label_mode``: "fine" or, for
      cifar100, "coarse" (20 superclasses).
    - ``preprocessing``: a pretrained checkpoint's (``tfvit.models.Preprocessing``, e.g. ``model.preprocessing``
      of a model made with ``tfvit.create_model(..., pretrained=...)``, or its ``to_dict()``): its mean and std
      replace the dataset's statistics, and images are resized to its input size with its interpolation unless
      ``image_size`` is given. None: the dataset's statistics, bilinear resizing.
    """
    info = check_request(name, split, label_mode, limit)
    batch_size = positive_int("batch_size", batch_size)
    size = None if image_size is None else as_pair("image_size", image_size)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be None, 1 (grayscale) or 3 (RGB); got {channels!r}.")
    names = augmentations.parse_augment(augment)
    if names and split != "train":
        raise ValueError(f"augment={augment!r} was given for split={split!r}; augmentation applies to the training "
                         f"split only, evaluate on unaugmented images.")
    shuffle = split == "train" if shuffle is None else shuffle
    for flag, value in (("shuffle", shuffle), ("normalize", normalize), ("cache", cache), ("prefetch", prefetch),
                        ("drop_remainder", drop_remainder)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be True or False; got {value!r}.")
    mixing = [n for n in names if n in augmentations.PER_BATCH]
    one_hot = bool(mixing) if one_hot is None else one_hot
    if not isinstance(one_hot, bool) or (mixing and not one_hot):
        raise ValueError(f"one_hot must be None, True or False (True with mixup / cutmix, whose labels are "
                         f"mixtures); got {one_hot!r}.")
    for arg, value in (("seed", seed), ("epoch", epoch)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= value < 2**62:
            raise ValueError(f"{arg} must be a non-negative integer; got {value!r}.")

    mean, std = channel_statistics(info, channels)
    method = "bilinear"
    if preprocessing is not None:
        mean, std, default_size, method = _checkpoint_preprocessing(preprocessing, len(mean), normalize)
        size = default_size if size is None else size

    images, labels = _arrays(name, split, data_dir, limit, label_mode, cache)
    count = len(images)
    num_classes = info.num_coarse_classes if label_mode == "coarse" else info.num_classes
    images, labels = tf.constant(images), tf.constant(labels)
    seed, epoch = int(seed), int(epoch)

    if shuffle or names:
        # The only state: how many passes this dataset has started, which makes each pass the next epoch. On the
        # CPU, where tf.data runs: a GPU-resident variable cannot be read from a tf.data function.
        with tf.device("/cpu:0"):
            passes = tf.Variable(0, dtype=tf.int64, trainable=False)

        def one_pass(_):
            pass_epoch = epoch + passes.assign_add(1) - 1
            order = tf.range(count, dtype=tf.int64)
            if shuffle:
                key = augmentations.derive_key(seed, _SHUFFLE, pass_epoch)
                order = tf.random.experimental.stateless_shuffle(order, seed=key, alg="philox")
            return tf.data.Dataset.from_tensor_slices(order).map(lambda i: (i, pass_epoch))

        order = tf.data.Dataset.range(1).flat_map(one_pass)
        order = order.apply(tf.data.experimental.assert_cardinality(count))
    else:
        order = tf.data.Dataset.range(count).map(lambda i: (i, tf.constant(epoch, tf.int64)))

    shape = (*info.image_shape[:2], channels or info.image_shape[2])
    per_image = [n for n in names if n in augmentations.PER_IMAGE]
    rand_augment = augmentations.RandAugment() if "randaugment" in names else None

    def gather(index, pass_epoch):
        """The images and labels at ``index`` (one example or a batch), as float [0, 255] in the wanted channels."""
        image = _convert_channels(tf.cast(tf.gather(images, index), tf.float32), channels)
        return image, tf.gather(labels, index), pass_epoch

    def augment_image(index, pass_epoch):
        image, label, pass_epoch = gather(index, pass_epoch)
        if "crop_flip" in names:
            key = augmentations.derive_key(seed, _PER_IMAGE, pass_epoch, index, 0)
            image = augmentations.crop_flip(image, key, flip=info.flip_preserves_label)
        if rand_augment is not None:
            image = rand_augment(image, augmentations.derive_key(seed, _PER_IMAGE, pass_epoch, index, 1))
        return tf.ensure_shape(image, shape), label, pass_epoch

    def finish(batch_number, batch):
        images, labels, pass_epoch = batch
        if size is not None and size != shape[:2]:
            images = tf.image.resize(images, size, method=method, antialias=True)
        images = images / 255.0
        if normalize:
            images = (images - tf.constant(mean)) / tf.constant(std)
        if one_hot:
            labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
        if mixing:
            key = augmentations.derive_key(seed, _PER_BATCH, pass_epoch[0], batch_number)
            images, labels = augmentations.mix_batch(images, labels, key, mixing)
        return images, labels

    if per_image:
        dataset = order.map(augment_image, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    else:  # one gather per batch, not a map call per image (python -m tools.pipeline_bench measures the pipeline)
        dataset = order.batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.enumerate()
    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def _checkpoint_preprocessing(preprocessing, num_channels, normalize):
    """(mean, std, (height, width), resize method) of ``load``'s ``preprocessing`` argument, checked against the
    images' ``num_channels``."""
    from tfvit.models.pretrained import Preprocessing  # plain data: no model code is loaded

    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing(**preprocessing)
    if not all(hasattr(preprocessing, key) for key in ("mean", "std", "image_size", "interpolation")):
        raise ValueError(f"preprocessing must be a tfvit.models.Preprocessing (e.g. model.preprocessing) or its "
                         f"to_dict(); got {type(preprocessing).__name__}.")
    if not normalize:
        raise ValueError("preprocessing was given with normalize=False; a checkpoint's preprocessing normalises with "
                         "its mean and std, so leave normalize at True (or drop preprocessing for [0, 1] images).")
    mean, std = tuple(preprocessing.mean), tuple(preprocessing.std)
    if len(mean) != num_channels:
        raise ValueError(f"preprocessing has statistics for {len(mean)} channels but the images have {num_channels}; "
                         f"pass channels={len(mean)} (the model's in_channels) to convert them.")
    return mean, std, as_pair("preprocessing.image_size", tuple(preprocessing.image_size)), preprocessing.interpolation


def _convert_channels(image, channels):
    """(..., C) -> (..., channels): gray repeated into RGB, or RGB weighted into luma."""
    have = image.shape[-1]
    if channels is None or channels == have:
        return image
    if have == 1:
        return tf.repeat(image, channels, axis=-1)
    return tf.tensordot(image, tf.constant(LUMA, tf.float32), axes=[[image.shape.rank - 1], [0]])[..., None]


def _arrays(name, split, data_dir, limit, label_mode, cache):
    if not cache:
        return load_arrays(name, split, data_dir=data_dir, limit=limit, label_mode=label_mode)
    # Everything that can change which files are read is part of the key.
    key = (name, split, label_mode, limit, data_folder(data_dir)[0], os.environ.get("TFDS_DATA_DIR"))
    if key in _ARRAYS:
        _ARRAYS.move_to_end(key)
    else:
        _ARRAYS[key] = load_arrays(name, split, data_dir=data_dir, limit=limit, label_mode=label_mode)
        while len(_ARRAYS) > _ARRAYS_KEPT:
            _ARRAYS.popitem(last=False)
    return _ARRAYS[key]
