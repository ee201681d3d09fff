"""What every tfvit layer promises: config round trip, registration for .keras files, and mixed
precision (compute in the policy's dtype, float32 softmax and normalisation, close to float32)."""

import keras
import numpy as np
import pytest

from tfvit import layers
from tests import reference

RNG = np.random.default_rng(0)
CASES = {
    "PatchEmbedding": (lambda: layers.PatchEmbedding(4, 16, use_norm=True), (2, 8, 8, 3)),
    "ClassToken": (lambda: layers.ClassToken(), (2, 4, 8)),
    "PositionEmbedding": (lambda: layers.PositionEmbedding((2, 2)), (2, 5, 8)),
    "MLP": (lambda: layers.MLP(16), (2, 4, 8)),
    "LayerNorm": (lambda: layers.LayerNorm(epsilon=1e-6), (2, 4, 8)),
    "Dense": (lambda: layers.Dense(6), (2, 4, 8)),
    "Conv2D": (lambda: layers.Conv2D(6, 2, strides=2), (2, 4, 4, 3)),
    "DropPath": (lambda: layers.DropPath(0.2, seed=1), (2, 4, 8)),
    "Dropout": (lambda: layers.Dropout(0.2, seed=1), (2, 4, 8)),
    "MultiHeadSelfAttention": (lambda: layers.MultiHeadSelfAttention(2), (2, 5, 8)),
    "TransformerBlock": (lambda: layers.TransformerBlock(2, drop_path=0.1), (2, 5, 8)),
    "WindowAttention": (lambda: layers.WindowAttention(2, 2), (3, 4, 8)),
    "SwinBlock": (lambda: layers.SwinBlock(2, window_size=2, shift_size=1), (2, 6, 6, 8)),
    "SwinStage": (lambda: layers.SwinStage(2, 2, 16, window_size=2, downsample=True), (2, 6, 6, 8)),
    "PatchMerging": (lambda: layers.PatchMerging(), (2, 5, 5, 8)),
    "TokenPooling": (lambda: layers.TokenPooling("mean"), (2, 5, 8)),
    "PerformerAttention": (lambda: layers.PerformerAttention(2, num_features=8, seed=0), (2, 5, 8)),
    "NeighborhoodAttention2D": (lambda: layers.NeighborhoodAttention2D(2, kernel_size=3), (2, 16, 8)),
    "LocalAttention1D": (lambda: layers.LocalAttention1D(2, window=3), (2, 7, 8)),
}


def test_every_public_layer_is_covered():
    public = {name for name in layers.__all__ if isinstance(getattr(layers, name), type)}
    assert public == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_round_trip_and_registration(name):
    make, shape = CASES[name]
    layer = make()
    layer(RNG.normal(size=shape).astype("float32"))
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(type(layer)) == f"tfvit>{name}"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 4e-2)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_mixed_precision_outputs(name, policy, tolerance):
    make, shape = CASES[name]
    reference.check_mixed_precision(make, RNG.normal(size=shape).astype("float32"), policy, tolerance)


@pytest.mark.parametrize("name", ["MultiHeadSelfAttention", "TransformerBlock", "WindowAttention", "SwinBlock",
                                  "NeighborhoodAttention2D", "LocalAttention1D"])
def test_softmax_runs_in_float32_under_mixed_precision(name, monkeypatch):
    # (Normalisation is tfvit.layers.LayerNorm, which computes in float32 by itself: test_layer_norm.py.)
    seen = []
    original = keras.ops.softmax

    def spy(x, *args, **kwargs):
        seen.append(("softmax", keras.backend.standardize_dtype(x.dtype)))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(keras.ops, "softmax", spy)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    make, shape = CASES[name]
    layer = make()
    if isinstance(layer, layers.MultiHeadSelfAttention):
        layer = layers.MultiHeadSelfAttention(2, use_fused_attention=False)
    layer(RNG.normal(size=shape).astype("float32"))
    assert any(op == "softmax" for op, _ in seen)
    for op, dtype in seen:
        if op == "softmax":
            assert dtype == "float32", seen
