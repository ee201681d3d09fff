"""The model-randomisation sanity check of saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that explains the model must change when the model's weights are destroyed. Cascading randomisation,
top-down: the weights of the last layer are re-drawn, then those of the layer before as well, and so on down to
the input; after each step the maps are recomputed and compared with the trained model's maps by Spearman's
rank correlation (per image, then averaged). A method whose correlation stays high while the layers it depends
on are random is showing the input, not the model. Each re-drawn weight is normal with the mean and standard
deviation of the weight it replaces, so scales stay as trained and the model still produces finite logits; only
trainable weights are re-drawn (a batch norm's moving variance, a Performer's projection and index tables stay).
"""

import keras
import numpy as np


def _ranks(values):
    """Ranks (0..n-1) of each row, ties broken by position (maps in [0, 1] have few exact ties but a flat map)."""
    order = np.argsort(values, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(values.shape[1])[None], axis=1)
    return ranks.astype(np.float64)


def rank_correlation(first, second):
    """Spearman's rank correlation of each pair of maps: (B, ...) and (B, ...) -> (B,) in [-1, 1]."""
    a = _ranks(np.asarray(first).reshape(len(first), -1))
    b = _ranks(np.asarray(second).reshape(len(second), -1))
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def weighted_layers(model):
    """The model's top-level layers that hold weights, input side first (the units that are randomised)."""
    return [layer for layer in model.layers if layer.trainable_weights]


def cascading_randomisation(model, images, explain, seed=0):
    """[(layer name, mean rank correlation with the trained maps)] after randomising each layer top-down.

    ``explain(model, images)`` returns (B, H, W) maps. The model's weights are restored afterwards, also when
    ``explain`` raises.
    """
    reference = explain(model, images)
    saved = [w.numpy() for w in model.trainable_weights]
    rng = np.random.default_rng(seed)
    results = []
    try:
        for layer in reversed(weighted_layers(model)):
            for weight in layer.trainable_weights:
                value = weight.numpy()
                drawn = rng.normal(value.mean(), value.std() or 1.0, size=value.shape)
                weight.assign(drawn.astype(keras.backend.standardize_dtype(weight.dtype)))
            results.append((layer.name, float(np.mean(rank_correlation(reference, explain(model, images))))))
    finally:
        for weight, value in zip(model.trainable_weights, saved):
            weight.assign(value)
    return results
