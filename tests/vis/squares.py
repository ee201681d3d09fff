"""A synthetic localisation task for the saliency tests, and the small models trained on it.

Each 32x32 image is uniform noise in [0, 1] per channel. Class 0 has nothing else; classes 1-3 add a
6x6 square, anywhere, of one pure colour: red, green or blue (that channel in [0.8, 1], the others in
[0, 0.2]). Nothing else tells the classes apart, so a classifier that solves the task must find the
square. Two choices keep the test honest:
- the square is no brighter than the noise (its mean intensity is about 0.37, the noise's 0.5), so a
  map that merely follows input magnitude, as maps of untrained networks tend to, does not find it;
- the empty class forces a detector for every colour: with colours alone a model can detect all but
  one colour and answer the last by elimination, and no map can then point at that colour's square.
"""

import keras
import numpy as np

IMAGE_SIZE = 32
SQUARE = 6
NUM_CLASSES = 4
COLOURS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)  # bright channel per class


def make_squares(count, seed, image_size=IMAGE_SIZE, square=SQUARE):
    """(images (count, S, S, 3) float32, labels (count,), boxes (count, 2) top-left corners, -1 if none)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, size=(count, image_size, image_size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=count)
    rows = rng.integers(0, image_size - square + 1, size=count)
    cols = rng.integers(0, image_size - square + 1, size=count)
    bright = rng.uniform(0.8, 1.0, size=(count, 3)).astype(np.float32)
    dark = rng.uniform(0.0, 0.2, size=(count, 3)).astype(np.float32)
    colours = np.where(COLOURS[labels] > 0, bright, dark)
    for i in np.flatnonzero(labels):
        images[i, rows[i]:rows[i] + square, cols[i]:cols[i] + square] = colours[i]
    boxes = np.where(labels[:, None] > 0, np.stack([rows, cols], axis=1), -1)
    return images, labels.astype(np.int64), boxes


def pointing_hits(maps, boxes, square=SQUARE):
    """Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop"): a hit when the
    map's maximum lies inside the square (no tolerance). Ties count as the first maximum in row-major order,
    so a flat map points at its top-left corner."""
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    r, c = np.divmod(flat, maps.shape[2])
    return (r >= boxes[:, 0]) & (r < boxes[:, 0] + square) & (c >= boxes[:, 1]) & (c < boxes[:, 1] + square)


def chance_level(square=SQUARE, image_size=IMAGE_SIZE):
    """Hit rate of a maximum placed uniformly at random: the square's share of the image."""
    return square * square / image_size ** 2


def small_cnn():
    """conv-pool-conv -> global average pooling -> linear head: the model family Grad-CAM was made for."""
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(images)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, keras.layers.Dense(NUM_CLASSES, name="head")(x), name="small_cnn")


def small_vit():
    from tfvit.models import VisionTransformer

    return VisionTransformer(image_size=IMAGE_SIZE, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                             num_classes=NUM_CLASSES, name="small_vit")


def small_swin():
    """One Swin stage (a window block and a shifted-window block) on the 8x8 grid of 4x4 patches."""
    from tfvit.models import SwinTransformer

    return SwinTransformer(image_size=IMAGE_SIZE, patch_size=4, embed_dim=32, depths=(2,), num_heads=(2,),
                           window_size=4, mlp_ratio=2.0, drop_path_rate=0.0, num_classes=NUM_CLASSES,
                           name="small_swin")


RECIPES = {"cnn": (small_cnn, 12, 3e-3), "vit": (small_vit, 6, 1e-3), "swin": (small_swin, 8, 2e-3)}


def train(kind, images, labels, seed=0):
    """Build and train one of the small models (Adam, batch 64); returns the model."""
    make, epochs, learning_rate = RECIPES[kind]
    keras.utils.set_random_seed(seed)
    model = make()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=64, epochs=epochs, verbose=0)
    return model
