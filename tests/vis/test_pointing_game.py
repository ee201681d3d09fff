"""Pointing game on trained models: does the saliency maximum fall on the object that decides the class?

The task (tests/vis/squares.py): find a small coloured square in noise; its colour is the class. A hit is
a maximum inside the 6x6 square, no tolerance; chance (a maximum anywhere) is 36 / 1024 = 3.5%. Each
model is trained once per module (seeded), checked to solve the task, then scored on ~200 held-out
images with a square. An untrained model and random maps are scored too, so that a pass means the
trained model's maps localise, not that the metric is easy.

Measured (hits on the 197 held-out squares; untrained: mean over 6 seeds): CNN Grad-CAM, Grad-CAM++,
Score-CAM and LayerCAM 1.00 (untrained Grad-CAM 0.04); ViT attention rollout 0.98 (untrained 0.12);
Swin Grad-CAM on the patch grid 0.96 (untrained 0.07). With their default, last-layer targets the
transformers' Grad-CAM maps do *not* localise (ViT 0.03, Swin 0.29; Grad-CAM++, Score-CAM and LayerCAM
there: ViT 0.04 / 0.16 / 0.00, Swin 0.28 / 0.29 / 0.28): the tests check that too, as documented limits.
"""

import keras
import numpy as np
import pytest

from tests.vis import squares
from tfvit.vis import attention_rollout, gradcam

CHANCE = squares.chance_level()


class Task:
    def __init__(self):
        self.train = squares.make_squares(2000, seed=0)
        images, labels, boxes = squares.make_squares(260, seed=1)
        self.all_images, self.all_labels = images, labels
        with_square = labels > 0
        self.images, self.labels, self.boxes = images[with_square], labels[with_square], boxes[with_square]

    def hits(self, maps):
        return float(squares.pointing_hits(maps, self.boxes).mean())


@pytest.fixture(scope="module")
def task():
    return Task()


def trained(task, kind):
    model = squares.train(kind, *task.train[:2])
    accuracy = float((np.argmax(model.predict(task.all_images, verbose=0), -1) == task.all_labels).mean())
    # If this fails the model did not learn the task, and no saliency result below would mean anything.
    assert accuracy > 0.9, f"the {kind} reached only {accuracy:.2f} held-out accuracy"
    return model


@pytest.fixture(scope="module")
def cnn(task):
    return trained(task, "cnn")


@pytest.fixture(scope="module")
def vit(task):
    return trained(task, "vit")


@pytest.fixture(scope="module")
def swin(task):
    return trained(task, "swin")


def test_random_maps_score_chance(task):
    rng = np.random.default_rng(0)
    scores = [task.hits(rng.uniform(size=task.images.shape[:3])) for _ in range(5)]
    assert abs(np.mean(scores) - CHANCE) < 0.03


def test_cnn_maps_point_at_the_square(task, cnn):
    for method in ("gradcam", "gradcam++", "scorecam", "layercam"):
        hits = task.hits(gradcam(cnn, task.images, method=method))
        assert hits >= 0.9, f"{method}: {hits:.2f}"


def untrained_hits(task, make, saliency, seeds=(0, 1, 2)):
    """Mean hits of freshly initialised models (a single draw varies: 0.00-0.28 over seeds measured)."""
    scores = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        scores.append(task.hits(saliency(make())))
    return float(np.mean(scores))


def test_untrained_cnn_gradcam_does_not(task):
    assert untrained_hits(task, squares.small_cnn, lambda model: gradcam(model, task.images)) <= 0.3


# One test per trained model: under pytest-xdist a module fixture is rebuilt in every worker that runs
# one of its tests, so each model's checks, including its documented failures, share a test.

def test_vit_attention_rollout_points_at_the_square_and_its_gradcam_does_not(task, vit):
    assert task.hits(attention_rollout(vit, task.images)) >= 0.8 > 20 * CHANCE
    # Untrained, the square's patches still embed differently from noise, so rollout finds it more often
    # than chance (0.02-0.26 over seeds) but far less often than after training.
    assert untrained_hits(task, squares.small_vit, lambda model: attention_rollout(model, task.images)) <= 0.3
    # Documented limitation (measured 0.03): the Grad-CAM of this class-token ViT at its default target (the
    # last block's norm1, as pytorch-grad-cam) is not largest on the square for any colour. If this starts
    # to fail, Grad-CAM began to localise here: update the gradcam docstring and this test.
    assert task.hits(gradcam(vit, task.images)) < 0.3


def test_swin_gradcam_points_at_the_square_from_the_patch_grid_not_from_the_last_stage(task, swin):
    # "patch_embed" is the (8, 8) grid of patch features before any attention: the gradient of the logit
    # still flows through every block, but the features belong to one patch each.
    assert task.hits(gradcam(swin, task.images, layer="patch_embed")) >= 0.8
    untrained = untrained_hits(task, squares.small_swin, lambda model: gradcam(model, task.images, layer="patch_embed"))
    assert untrained <= 0.3
    # Documented limitation (measured 0.29): at the default target (the final norm after the last stage)
    # every token of the square's (shifted) windows carries the class evidence, so the map is a plateau of
    # about 6x6 tokens whose maximum is rarely on the square itself.
    assert task.hits(gradcam(swin, task.images)) < 0.5
