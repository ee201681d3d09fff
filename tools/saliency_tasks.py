"""Synthetic localisation tasks for measuring saliency maps, and the small models of each family trained on them.

Every 32x32 image is uniform noise in [0, 1] per channel. The class is decided by one 6x6 patch of evidence at a
random place, and by nothing else, so a classifier that solves a task must find the patch. What decides the class
varies with the task:
- ``colour``: class 0 has no patch; classes 1-3 a square of one pure colour, red, green or blue (that channel in
  [0.8, 1], the others in [0, 0.2]);
- ``shape``: class 0 has no patch; classes 1-3 a grey pattern of 20 bright pixels on a dark 6x6 ground: a ring,
  a plus or a 2x2 checkerboard (all channels bright in [0.7, 0.9] or dark in [0, 0.2]);
- ``position``: class 0 has no patch; classes 1-4 a square split in a red and a blue half, and where the red
  half lies decides the class: left of, above, right of or below the blue half.
Two choices keep the measurement honest: the patch is no brighter than the noise (its mean is 0.37-0.49, the
noise's 0.5), so a map that follows input magnitude, as maps of untrained networks tend to, does not find it;
and an empty class forces a detector for every kind of evidence (without it a model can detect all but one kind
and answer the last by elimination, and no map can then point at that kind).

``make_pairs`` draws images holding the evidence of two different classes, for class-specificity: the map of
each class must point at that class's own patch.
"""

import keras
import numpy as np

IMAGE_SIZE = 32
PATCH = 6
TASKS = ("colour", "shape", "position")
NUM_CLASSES = {"colour": 4, "shape": 4, "position": 5}
_HALF = PATCH // 2
_COLOURS = np.eye(3, dtype=np.float32)  # bright channel of red, green, blue


def _shape_masks():
    ring = np.ones((PATCH, PATCH), bool)
    ring[1:-1, 1:-1] = False
    plus = np.zeros((PATCH, PATCH), bool)
    plus[2:4, :] = plus[:, 2:4] = True
    plus[2:4, 2:4] = True
    checker = (np.add.outer(np.arange(PATCH) // 2, np.arange(PATCH) // 2) % 2 == 0)
    return np.stack([ring, plus, checker])  # 20, 20 and 20 bright pixels


_SHAPES = _shape_masks()


def _corner(rng):
    """Top-left corner of the patch, anywhere in the image."""
    return rng.integers(0, IMAGE_SIZE - PATCH + 1), rng.integers(0, IMAGE_SIZE - PATCH + 1)


def _pure(rng, colour):
    """One pixel value of a pure colour: its channel in [0.8, 1], the others in [0, 0.2]."""
    return np.where(_COLOURS[colour] > 0, rng.uniform(0.8, 1.0, 3), rng.uniform(0.0, 0.2, 3))


def _paint(image, rng, label, task, corner):
    r, c = corner
    if task == "shape":
        bright = rng.uniform(0.7, 0.9)
        dark = rng.uniform(0.0, 0.2, size=3)
        patch = np.where(_SHAPES[label - 1][..., None], bright, dark[None, None])
    elif task == "position":
        red_first = np.zeros((PATCH, PATCH), bool)  # red half left of the blue half, then turned a quarter
        red_first[:, :_HALF] = True
        red = np.rot90(red_first, k=-(label - 1))  # left, above, right, below
        patch = np.where(red[..., None], _pure(rng, 0), _pure(rng, 2))
    else:
        patch = np.broadcast_to(_pure(rng, label - 1), (PATCH, PATCH, 3))
    image[r:r + PATCH, c:c + PATCH] = patch


def _check_task(task):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")


def make_task(task, count, seed):
    """(images (count, 32, 32, 3) float32, labels (count,) int64, boxes (count, 2) top-left corners, -1 if none)."""
    _check_task(task)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, size=(count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES[task], size=count)
    boxes = np.full((count, 2), -1)
    for i in np.flatnonzero(labels):
        boxes[i] = _corner(rng)
        _paint(images[i], rng, labels[i], task, boxes[i])
    return images, labels.astype(np.int64), boxes


def _overlap(a, b):
    return abs(a[0] - b[0]) < PATCH and abs(a[1] - b[1]) < PATCH


def make_pairs(task, count, seed):
    """Images with the evidence of two different non-empty classes: (images, classes (count, 2), boxes (count, 2, 2))."""
    _check_task(task)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, size=(count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    classes = np.stack([rng.choice(np.arange(1, NUM_CLASSES[task]), 2, replace=False) for _ in range(count)])
    boxes = np.zeros((count, 2, 2), dtype=np.int64)
    for i in range(count):
        first, second = _corner(rng), _corner(rng)
        while _overlap(first, second):  # two patches that touch would share their evidence
            second = _corner(rng)
        boxes[i] = first, second
        for label, corner in zip(classes[i], boxes[i]):
            _paint(images[i], rng, label, task, corner)
    return images, classes.astype(np.int64), boxes


# --- The small models, one per family that tfvit.vis.explain distinguishes ----------------------------------

def _vit(**options):
    from tfvit.models import VisionTransformer

    base = dict(image_size=IMAGE_SIZE, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    return lambda classes: VisionTransformer(num_classes=classes, **{**base, **options})


def _swin(classes):
    """One Swin stage (a window block and a shifted-window block) on the 8x8 grid of 4x4 patches."""
    from tfvit.models import SwinTransformer

    return SwinTransformer(image_size=IMAGE_SIZE, patch_size=4, embed_dim=32, depths=(2,), num_heads=(2,),
                           window_size=4, mlp_ratio=2.0, drop_path_rate=0.0, num_classes=classes, name="small_swin")


def _cnn(classes):
    """conv-pool-conv -> global average pooling -> linear head: the model family Grad-CAM was made for."""
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(images)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, keras.layers.Dense(classes, name="head")(x), name="small_cnn")


# family -> (builder(num_classes), epochs on the colour task, learning rate), Adam at batch 64.
FAMILIES = {
    "cnn": (_cnn, 12, 3e-3),
    "vit_token": (_vit(name="vit_token"), 8, 1e-3),
    "vit_mean": (_vit(class_token=False, pooling="mean", name="vit_mean"), 8, 1e-3),
    "vit_local": (_vit(class_token=False, pooling="mean", attention="local2d", attention_kwargs={"kernel_size": 3},
                       name="vit_local"), 8, 1e-3),
    "vit_performer": (_vit(class_token=False, pooling="mean", attention="performer_softmax", name="vit_performer"),
                      8, 1e-3),
    "swin": (_swin, 8, 2e-3),
}


# task -> (training images, epochs as a multiple of the family's): a shape is harder to learn than a colour
# (measured: at 2000 images and the colour task's epochs the small ViT reached 0.39 held-out accuracy on shapes).
TRAINING = {"colour": (2000, 1.0), "position": (3000, 1.5), "shape": (6000, 2.5)}


def build(family, task):
    return FAMILIES[family][0](NUM_CLASSES[task])


def train(family, task, images, labels, seed=0, epochs=None):
    """Build and train one family's small model on a task (Adam, batch 64); returns the model."""
    _, colour_epochs, learning_rate = FAMILIES[family]
    default_epochs = int(round(colour_epochs * TRAINING[task][1]))
    keras.utils.set_random_seed(seed)
    model = build(family, task)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=64, epochs=epochs or default_epochs, verbose=0)
    return model
