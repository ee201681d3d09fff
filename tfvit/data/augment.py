"""Training-time augmentations for tf.data pipelines, every random draw a stateless function of a key.

``load`` derives each key from (seed, epoch, example or batch number), so an augmented epoch is the same on every
run and in any thread order, and a run resumed at epoch e sees what an uninterrupted run saw.

- ``crop_flip``: pad 4 pixels of zeros, crop back at a random offset, mirror with probability 1/2; the CIFAR
  recipe of He et al. 2016 ("Deep Residual Learning", Sec. 4.2).
- ``RandAugment``: Cubuk et al. 2020, through ``keras.layers.RandAugment`` applied image by image (the paper
  draws the operations per image; the Keras layer draws them once per call).
- ``mixup`` (Zhang et al. 2018) and ``cutmix`` (Yun et al. 2019): mix each image of a batch with the image at the
  mirrored position of the batch (the batch is already shuffled), and mix the one-hot labels in the same
  proportion, as timm does. With both, each batch uses one of the two with probability 1/2 (DeiT's recipe,
  Touvron et al. 2021, whose alphas are the defaults here).
"""

import difflib
import functools

import keras
import tensorflow as tf

from tfvit._keras_range import require_tested_keras

AUGMENTATIONS = ("crop_flip", "randaugment", "mixup", "cutmix")
PER_IMAGE = ("crop_flip", "randaugment")
PER_BATCH = ("mixup", "cutmix")
MIXUP_ALPHA = 0.8
CUTMIX_ALPHA = 1.0


def parse_augment(augment):
    """``None``, a name, a comma-separated string of names (``"crop_flip,mixup"``, as the recipes' ``--augment``
    flag) or a list of names -> a tuple of distinct names from ``AUGMENTATIONS``, in the order given. An empty
    string is no augmentation (the flag's default)."""
    if augment is None:
        return ()
    if isinstance(augment, str):
        names = [n.strip() for n in augment.split(",")] if augment.strip() else []
        if "" in names:
            raise ValueError(f"augment: empty name in {augment!r}; separate the names with single commas, e.g. "
                             f"'crop_flip,mixup'.")
    elif isinstance(augment, (list, tuple)) and all(isinstance(n, str) for n in augment):
        names = list(augment)
    else:
        raise ValueError(f"augment must be None, a name or a list of names (or one comma-separated string of names) "
                         f"from {', '.join(AUGMENTATIONS)}; got {augment!r}.")
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        message = f"augment: unknown name(s) {', '.join(map(repr, unknown))}; choose from {', '.join(AUGMENTATIONS)}"
        message += f" (augment={augment!r})." if isinstance(augment, str) and len(names) > 1 else "."
        close = [difflib.get_close_matches(n, AUGMENTATIONS, n=1) for n in unknown]
        if any(close):
            message += " Did you mean " + ", ".join(repr(c[0]) for c in close if c) + "?"
        if any("," in n for n in unknown):
            message += " A list holds one name per item; or give all the names as one comma-separated string."
        raise ValueError(message)
    return tuple(dict.fromkeys(names))


def derive_key(seed, *data):
    """A stateless-RNG key (int64 pair) that depends on ``seed`` and each of ``data`` (ints or scalar tensors)."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    for value in data:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int64), alg="philox")
    return key


def _uniform(key, shape):
    return tf.random.stateless_uniform(shape, seed=key, alg="philox")


def crop_flip(image, key, padding=4, flip=True):
    """Zero-pad an (H, W, C) image by ``padding`` pixels, crop an H x W window at a uniform random offset and,
    when ``flip``, mirror it left-right with probability 1/2 (off for digits, whose mirror images are not digits).
    Zero is black: ``load`` calls this on [0, 255] pixels, before normalisation, as torchvision's
    ``RandomCrop(32, padding=4)`` does."""
    height, width, channels = image.shape
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    u = _uniform(key, [3])
    offsets = tf.cast(tf.floor(u[:2] * (2 * padding + 1)), tf.int32)
    image = tf.slice(padded, [offsets[0], offsets[1], 0], [height, width, channels])
    if flip:
        image = tf.where(u[2] < 0.5, image[:, ::-1], image)
    return image


class _KeyedSeeds(keras.random.SeedGenerator):
    """A SeedGenerator whose n-th draw is ``fold_in(key, n)`` for a key set just before the layer is traced,
    instead of a read-and-increment of a shared variable (which parallel tf.data calls would race on)."""

    def __init__(self):
        super().__init__(seed=0)
        self.key, self.draws = None, 0

    def next(self, ordered=True):
        self.draws += 1
        return tf.random.experimental.stateless_fold_in(self.key, self.draws, alg="philox")


class _KeyedRandAugment(keras.layers.RandAugment):
    def __init__(self, **kwargs):
        require_tested_keras("tfvit.data's keyed RandAugment")
        super().__init__(**kwargs)
        self.keyed_seeds = _KeyedSeeds()

    # Every random draw of RandAugment and of the sub-layers it calls comes from this method (Keras 3.15).
    def _get_seed_generator(self, backend=None):
        return self.keyed_seeds

    def transform_images(self, images, transformation, training=True):
        # Keras computes all eleven operations and keeps the chosen one with `where`; a switch computes only the
        # chosen one, with the same result, so each image costs one operation's time instead of eleven.
        images = tf.cast(images, self.compute_dtype)
        if not training:
            return images
        transforms = transformation["transforms"]
        for i in range(self.num_ops):
            branches = [functools.partial(self._apply, name, images, transforms[name]) for name in transforms]
            images = tf.switch_case(tf.cast(transformation["layer_idxes"][i], tf.int32), branches)
        return images

    def _apply(self, name, images, transform):
        return tf.cast(getattr(self, name).transform_images(images, transform), self.compute_dtype)


class RandAugment:
    """RandAugment (Cubuk et al. 2020) per image: ``num_ops`` operations drawn from keras.layers.RandAugment's
    eleven, each at a random strength up to ``factor``. Call it as ``augment(image, key)`` on one (H, W, C) float
    image in [0, 255] (the layer's default value range); it returns a float image in [0, 255].

    Build it outside tf.data (Keras creates variables on construction) and call it inside ``Dataset.map``."""

    def __init__(self, num_ops=2, factor=0.5):
        self.layer = _KeyedRandAugment(value_range=(0, 255), num_ops=num_ops, factor=factor, seed=0,
                                       name="rand_augment")

    def __call__(self, image, key):
        # The draws are numbered while tf.data traces the map function once; the key is a tensor input, so each
        # image gets its own draws at run time.
        self.layer.keyed_seeds.key, self.layer.keyed_seeds.draws = key, 0
        return tf.clip_by_value(self.layer(image), 0.0, 255.0)


def _beta(key, alpha):
    """One sample of Beta(alpha, alpha) as G1 / (G1 + G2) with G1, G2 ~ Gamma(alpha) independent."""
    gammas = tf.random.stateless_gamma([2], seed=key, alpha=alpha)
    return gammas[0] / (gammas[0] + gammas[1])


def mixup(images, labels, key, alpha=MIXUP_ALPHA):
    """MixUp (Zhang et al. 2018): ``lam * x + (1 - lam) * x_partner`` and the same for one-hot ``labels``, one
    ``lam ~ Beta(alpha, alpha)`` per batch; the partner of batch position i is position B-1-i."""
    lam = _beta(key, alpha)
    return lam * images + (1 - lam) * images[::-1], lam * labels + (1 - lam) * labels[::-1]


def cutmix(images, labels, key, alpha=CUTMIX_ALPHA):
    """CutMix (Yun et al. 2019): paste the partner's pixels (position B-1-i) into one rectangle per batch.

    As the reference ``rand_bbox``: ``lam ~ Beta(alpha, alpha)``, sides ``floor(H sqrt(1-lam))`` x
    ``floor(W sqrt(1-lam))`` centred at a uniform pixel and clipped to the image; the labels are mixed by the
    pasted area actually kept: ``lam' = 1 - area / (H W)``."""
    height, width = images.shape[1], images.shape[2]
    keys = tf.random.experimental.stateless_split(key, 2, alg="philox")
    cut = tf.sqrt(1.0 - _beta(keys[0], alpha))
    cut_h, cut_w = tf.cast(height * cut, tf.int32), tf.cast(width * cut, tf.int32)
    u = _uniform(keys[1], [2])
    cy, cx = tf.cast(u[0] * height, tf.int32), tf.cast(u[1] * width, tf.int32)
    y1, y2 = tf.clip_by_value(cy - cut_h // 2, 0, height), tf.clip_by_value(cy + cut_h // 2, 0, height)
    x1, x2 = tf.clip_by_value(cx - cut_w // 2, 0, width), tf.clip_by_value(cx + cut_w // 2, 0, width)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
    images = tf.where(inside[None, :, :, None], images[::-1], images)
    lam = 1.0 - tf.cast((y2 - y1) * (x2 - x1), tf.float32) / (height * width)
    return images, lam * labels + (1 - lam) * labels[::-1]


def mix_batch(images, labels, key, names):
    """Apply the batch-level augmentations in ``names`` (mixup, cutmix or both: then one of them, chosen with
    probability 1/2 per batch) to float images and one-hot float labels."""
    keys = tf.random.experimental.stateless_split(key, 2, alg="philox")
    if "mixup" in names and "cutmix" in names:
        return tf.cond(_uniform(keys[0], []) < 0.5, lambda: mixup(images, labels, keys[1]),
                       lambda: cutmix(images, labels, keys[1]))
    if "mixup" in names:
        return mixup(images, labels, keys[1])
    if "cutmix" in names:
        return cutmix(images, labels, keys[1])
    return images, labels
