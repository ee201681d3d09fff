"""The saliency scores against brute force: the pointing game, class-specificity, deletion / insertion curves
(Petsiuk et al. 2018) and the cascading-randomisation check (Adebayo et al. 2018)."""

import keras
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats

from tfvit.vis import (
    cascading_randomisation, class_specificity, deletion_insertion, pointing_chance, pointing_hits, rank_correlation,
)
from tfvit.vis.faithfulness import _blur


def test_pointing_hits_against_a_loop_with_exclusive_box_ends_and_first_maximum_ties():
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(50, 9, 11))
    maps[0] = 0.0  # flat: the first maximum is the top-left pixel
    maps[1, 2, 3] = maps[1, 4, 5] = 2.0  # a tie: the first in row-major order, (2, 3), counts
    boxes = np.stack([rng.integers(0, 5, 50), rng.integers(0, 6, 50)], axis=1)
    boxes = np.concatenate([boxes, boxes + rng.integers(1, 5, (50, 2))], axis=1)
    boxes[0] = (0, 0, 1, 1)
    boxes[1] = (2, 3, 3, 4)
    expected = []
    for m, (top, left, bottom, right) in zip(maps, boxes):
        peak = max(((m[r, c], -r, -c) for r in range(m.shape[0]) for c in range(m.shape[1])))
        r, c = -peak[1], -peak[2]
        expected.append(top <= r < bottom and left <= c < right)
    np.testing.assert_array_equal(pointing_hits(maps, boxes), expected)
    assert pointing_hits(maps[1:2], [(4, 5, 5, 6)]).tolist() == [False]  # the later tie does not count
    assert pointing_chance(np.array([(0, 0, 6, 6)]), (32, 32)) == 36 / 1024
    with pytest.raises(ValueError, match=r"boxes must have shape \(50, 4\)"):
        pointing_hits(maps, boxes[:, :2])


def test_class_specificity_counts_each_class_map_against_its_own_box():
    images = np.zeros((3, 8, 8, 1))
    classes = np.array([[0, 1], [1, 0], [0, 1]])
    top_left, bottom_right = (0, 0, 2, 2), (6, 6, 8, 8)
    boxes = np.array([[top_left, bottom_right], [bottom_right, top_left], [top_left, bottom_right]])

    def explain(x, class_index):  # class 0's map peaks at the top-left, class 1's at the bottom-right
        maps = np.zeros((len(x), 8, 8))
        for i, c in enumerate(class_index):
            maps[i, 7 * c, 7 * c] = 1.0
        return maps

    assert class_specificity(explain, images, classes, boxes) == 1.0
    assert class_specificity(lambda x, c: explain(x, 1 - np.asarray(c)), images, classes, boxes) == 0.0


def test_blur_is_scipys_gaussian_filter_with_mirrored_edges():
    images = np.random.default_rng(1).uniform(size=(2, 12, 10, 3)).astype(np.float32)
    sigma = 1.3
    expected = scipy.ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="mirror",
                                             truncate=round(3 * sigma) / sigma)
    np.testing.assert_allclose(_blur(images, sigma), expected, atol=1e-5)


def linear_model(size=6, channels=2, classes=3, softmax=False):
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Flatten()(inputs)
    out = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="head")(x)
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(2)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    return model


def brute_force_curves(model, images, maps, classes, steps, fill, start_canvas):
    """The curves pixel by pixel in numpy: rank by the map (stable), swap the first k pixels, softmax the logits."""
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("head").weights)
    h, w, _ = images.shape[1:]
    out = {"deletion": [], "insertion": []}
    for image, m, c, f, start in zip(images, maps, classes, fill, start_canvas):
        order = sorted(range(h * w), key=lambda p: (-m.flat[p], p))
        for name, begin, end in (("deletion", image, np.broadcast_to(f, image.shape)), ("insertion", start, image)):
            curve = []
            for k in np.round(np.linspace(0, h * w, steps + 1)).astype(int):
                canvas = np.array(begin, np.float64)
                for p in order[:k]:
                    canvas[p // w, p % w] = end[p // w, p % w]
                logits = canvas.reshape(-1) @ kernel + bias
                curve.append(np.exp(logits[c] - logits.max()) / np.exp(logits - logits.max()).sum())
            out[name].append(curve)
    return out


def test_deletion_and_insertion_curves_against_brute_force():
    model = linear_model(softmax=True)  # the softmax layer is bypassed for the logits, then applied again
    rng = np.random.default_rng(3)
    images = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
    maps = rng.uniform(size=(3, 6, 6)).astype(np.float32)
    maps[0, :2] = 0.5  # ties keep row-major order
    classes = [0, 2, 1]
    curves = deletion_insertion(model, images, maps, class_index=classes, steps=7, blur_sigma=0.8)
    expected = brute_force_curves(model, images, maps, classes, 7, images.mean(axis=(1, 2), keepdims=True)[:, 0],
                                  _blur(images, 0.8))
    for name in ("deletion", "insertion"):
        np.testing.assert_allclose(curves[name], expected[name], atol=1e-5)
        np.testing.assert_allclose(curves[f"{name}_auc"],
                                   np.trapezoid(expected[name], np.round(np.linspace(0, 36, 8)) / 36), atol=1e-5)


def test_the_true_contributions_beat_a_random_map():
    model = linear_model(classes=2)
    rng = np.random.default_rng(4)
    images = rng.normal(size=(20, 6, 6, 2)).astype(np.float32)
    kernel = model.get_layer("head").kernel.numpy().reshape(6, 6, 2, 2)
    fill = images.mean(axis=(1, 2), keepdims=True)
    truth = ((images - fill) * kernel[..., 0]).sum(axis=-1)  # each pixel's share of class 0's logit
    good = deletion_insertion(model, images, truth, class_index=0)
    random = deletion_insertion(model, images, rng.uniform(size=truth.shape), class_index=0)
    assert good["deletion_auc"].mean() < random["deletion_auc"].mean() - 0.1
    with pytest.raises(ValueError, match=r"maps must have shape \(20, 6, 6\)"):
        deletion_insertion(model, images, truth[:, :3], class_index=0)


def test_rank_correlation_is_spearmans():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(size=(4, 7, 5)), rng.uniform(size=(4, 7, 5))
    b[0] = a[0] ** 3  # monotone: 1
    expected = [scipy.stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(rank_correlation(a, b), expected, atol=1e-12)
    assert rank_correlation(a[:1], -a[:1])[0] == pytest.approx(-1.0)


def test_cascading_randomisation_goes_top_down_and_restores_the_weights():
    images = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(images)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(images, keras.layers.Dense(2, name="head")(x))
    before = [w.numpy().copy() for w in model.weights]
    x = np.random.default_rng(6).normal(size=(4, 6, 6, 2)).astype(np.float32)

    def input_gradient(m, batch):
        import tensorflow as tf

        batch = tf.constant(batch)
        with tf.GradientTape() as tape:
            tape.watch(batch)
            score = m(batch)[:, 0]
        return np.abs(tape.gradient(score, batch).numpy()).sum(-1)

    steps = cascading_randomisation(model, x, input_gradient)
    assert [name for name, _ in steps] == ["head", "conv"]
    assert steps[-1][1] < 0.9  # with every layer re-drawn the gradient map has changed
    # A "method" that shows the input whatever the model is: the check must flag it (correlation 1 throughout).
    blind = cascading_randomisation(model, x, lambda m, batch: batch.sum(-1))
    assert all(r == pytest.approx(1.0) for _, r in blind)
    for w, value in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), value)
