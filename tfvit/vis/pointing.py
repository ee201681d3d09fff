"""Localisation scores of saliency maps: the pointing game and class-specificity.

Pointing game (Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop", section 5.1), here with
no tolerance: a map scores a hit when its maximum lies inside the box of the evidence. Ties count as the first
maximum in row-major order, so a flat map points at its top-left pixel and cannot score by being vague.
Chance is the box's share of the image: a maximum placed uniformly at random.

Class-specificity: on an image holding the evidence of two classes, the map of each class must point at that
class's own evidence. A method that explains the image rather than the class (attention rollout, plain input
gradients of a saturated model) scores about one half at best.
"""

import numpy as np


def _boxes(boxes, count):
    boxes = np.asarray(boxes)
    if boxes.shape != (count, 4):
        raise ValueError(f"boxes must have shape ({count}, 4): (top, left, bottom, right), bottom and right "
                         f"exclusive, one per map; got {boxes.shape}.")
    return boxes


def pointing_hits(maps, boxes):
    """Whether each (H, W) map's maximum lies inside its box (top, left, bottom, right), exclusive ends: (B,) bool."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (batch, height, width), got {maps.shape}.")
    boxes = _boxes(boxes, len(maps))
    rows, cols = np.divmod(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[2])
    return (rows >= boxes[:, 0]) & (rows < boxes[:, 2]) & (cols >= boxes[:, 1]) & (cols < boxes[:, 3])


def pointing_chance(boxes, image_size):
    """The hit rate of a maximum placed uniformly at random: the mean share of the image the boxes cover."""
    boxes = np.asarray(boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return float(np.mean(area) / (image_size[0] * image_size[1]))


def class_specificity(explain, images, classes, boxes):
    """The share of class maps that point at their own class's evidence on images holding two classes.

    ``explain(images, class_index)`` returns (B, H, W) maps; ``classes`` is (B, 2), ``boxes`` (B, 2, 4). Each
    image is explained twice, once per class, and each of the 2B maps is one trial.
    """
    classes, boxes = np.asarray(classes), np.asarray(boxes)
    if classes.shape != (len(images), 2) or boxes.shape != (len(images), 2, 4):
        raise ValueError(f"classes must be ({len(images)}, 2) and boxes ({len(images)}, 2, 4), got "
                         f"{classes.shape} and {boxes.shape}.")
    hits = [pointing_hits(explain(images, classes[:, k]), boxes[:, k]) for k in range(2)]
    return float(np.mean(np.concatenate(hits)))
