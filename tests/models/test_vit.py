import numpy as np
import pytest

from tfvit.models import VisionTransformer
from tests import reference

TINY = dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5)


@pytest.mark.parametrize("pooling, class_token", [("token", True), ("mean", True), ("mean", False)])
def test_vit_forward_matches_reference(pooling, class_token):
    model = VisionTransformer(image_size=(8, 12), in_channels=2, pooling=pooling, class_token=class_token, **TINY)
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 2)).astype("float32")
    logits = model(x).numpy()
    w = reference.weights_of(model)
    for b in range(2):
        tokens = reference.patchify(x[b].astype(np.float64), w["patch_embed/proj/kernel"], w["patch_embed/proj/bias"])
        tokens = tokens.reshape(-1, 16)
        if class_token:
            tokens = np.concatenate([w["cls_token/cls_token"][0], tokens])
        tokens = tokens + w["pos_embed/pos_embed"][0]
        for i in range(2):
            tokens = reference.vit_block(tokens, w, f"blocks.{i}/", 2)
        tokens = reference.layer_norm(tokens, w["norm/gamma"], w["norm/beta"], 1e-6)
        pooled = tokens[0] if pooling == "token" else tokens[int(class_token):].mean(0)
        np.testing.assert_allclose(logits[b], pooled @ w["head/kernel"] + w["head/bias"], atol=1e-4)


def test_vit_weight_names_follow_timm():
    model = VisionTransformer(image_size=8, **TINY)
    names = {w.path for w in model.weights}
    for expected in ["patch_embed/proj/kernel", "cls_token/cls_token", "pos_embed/pos_embed",
                     "blocks.0/norm1/gamma", "blocks.0/attn/qkv/kernel", "blocks.0/attn/proj/bias",
                     "blocks.1/mlp/fc1/kernel", "blocks.1/mlp/fc2/bias", "norm/gamma", "head/kernel"]:
        assert expected in names


@pytest.mark.parametrize("image_size, in_channels", [(16, 3), (28, 1), ((32, 20), 4)])
def test_vit_resolutions_and_channels(image_size, in_channels):
    model = VisionTransformer(image_size=image_size, in_channels=in_channels, **TINY)
    size = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    assert model(np.zeros((3, *size, in_channels), "float32")).shape == (3, 5)
    assert model.grid_size == (size[0] // 4, size[1] // 4)


def test_vit_without_head_returns_features():
    model = VisionTransformer(image_size=8, **{**TINY, "num_classes": 0})
    assert model(np.zeros((2, 8, 8, 3), "float32")).shape == (2, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=2), "smaller than the patch size"),
        (dict(image_size=10), "not divisible by the patch size"),
        (dict(image_size=8, num_heads=3), "num_heads=3 does not divide embed_dim=16"),
        (dict(image_size=8, pooling="max"), "pooling must be one of"),
        (dict(image_size=8, class_token=False, pooling="token"), "class token"),
        (dict(image_size=8, num_classes=-1), "num_classes"),
    ],
)
def test_vit_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VisionTransformer(**{**TINY, **kwargs})


@pytest.mark.parametrize(
    "shape, message",
    [((2, 8, 8), "rank 4"), ((2, 8, 8, 1), "expects 3 input channel"), ((2, 12, 12, 3), "built for images of size")],
)
def test_vit_rejects_bad_input(shape, message):
    model = VisionTransformer(image_size=8, **TINY)
    with pytest.raises(ValueError, match=message):
        model(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match=message):
        model.predict(np.zeros(shape, "float32"), verbose=0)
