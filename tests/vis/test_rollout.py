import math

import keras
import numpy as np
import pytest

from tests import reference
from tests.vis.test_saliency import bilinear_half_pixel
from tfvit.models import SwinTransformer, VisionTransformer
from tfvit.vis import attention_rollout, attention_weights, rollout, rollout_applies

TINY = {"image_size": (8, 12), "patch_size": 4, "in_channels": 2, "embed_dim": 16, "depth": 3, "num_heads": 2,
        "mlp_ratio": 2.0, "num_classes": 3}


def peaked_vit(**overrides):
    """A ViT whose weights are redrawn at a larger scale, so its attention is far from uniform."""
    model = VisionTransformer(**{**TINY, **overrides})
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(scale=0.7, size=w.shape).astype("float32"))
    return model


def reference_attention(model, images):
    """Per-block (B, heads, N, N) attention weights from the ViT equations (tests/reference.py)."""
    w = reference.weights_of(model)
    heads, depth = TINY["num_heads"], TINY["depth"]
    per_block = [[] for _ in range(depth)]
    for image in images.astype(np.float64):
        tokens = reference.patchify(image, w["patch_embed/proj/kernel"], w["patch_embed/proj/bias"])
        tokens = np.concatenate([w["cls_token/cls_token"][0], tokens.reshape(-1, tokens.shape[-1])])
        tokens = tokens + w["pos_embed/pos_embed"][0]
        for i in range(depth):
            prefix = f"blocks.{i}/"
            normed = reference.layer_norm(tokens, w[prefix + "norm1/gamma"], w[prefix + "norm1/beta"], 1e-6)
            q, k, _ = reference.attention_heads(normed, w, prefix + "attn/", heads)
            scale = math.sqrt(q.shape[-1])
            per_block[i].append([reference.softmax(q[h] @ k[h].T / scale) for h in range(heads)])
            tokens = reference.vit_block(tokens, w, prefix, heads)
    return [np.array(block) for block in per_block]


def reference_rollout(attentions, discard_ratio, head_fusion):
    """Abnar & Zuidema's rollout written out entry by entry."""
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    batch, heads, n, _ = attentions[0].shape
    result = np.zeros((batch, n, n))
    for b in range(batch):
        joint = np.eye(n)
        for attention in attentions:
            fused = np.array([[fuse([attention[b, h, i, j] for h in range(heads)]) for j in range(n)]
                              for i in range(n)])
            drop = int(discard_ratio * (n - 1))
            for i in range(n):
                for j in sorted(range(1, n), key=lambda j: fused[i, j])[:drop]:  # never column 0
                    fused[i, j] = 0.0
            mixed = 0.5 * fused + 0.5 * np.eye(n)
            for i in range(n):
                mixed[i] = mixed[i] / mixed[i].sum()
            joint = mixed @ joint
        result[b] = joint
    return result


@pytest.fixture(scope="module")
def vit_and_images():
    keras.utils.set_random_seed(3)
    model = peaked_vit()
    images = np.random.default_rng(1).normal(size=(2, 8, 12, 2)).astype("float32")
    return model, images, reference_attention(model, images)


def test_attention_weights_match_the_reference(vit_and_images):
    model, images, expected = vit_and_images
    got = attention_weights(model, images)
    assert len(got) == 3 and all(a.dtype == np.float32 and a.shape == (2, 2, 7, 7) for a in got)
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, atol=1e-5)
    assert max(a.max() for a in got) > 0.9  # peaked, so the comparison below is not between uniform rows


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5])
def test_rollout_matches_the_reference(vit_and_images, head_fusion, discard_ratio):
    model, images, attentions = vit_and_images
    expected = reference_rollout(attentions, discard_ratio, head_fusion)
    np.testing.assert_allclose(rollout(attention_weights(model, images), discard_ratio, head_fusion), expected,
                               atol=1e-5)
    grid = attention_rollout(model, images, discard_ratio=discard_ratio, head_fusion=head_fusion, upsample=False)
    row = expected[:, 0, 1:].reshape(2, 2, 3)
    low, high = row.min(axis=(1, 2), keepdims=True), row.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(grid, (row - low) / (high - low), atol=1e-5)


def test_rollout_small_cases_by_hand():
    # One block, one head: A = [[0.5, 0.5], [0, 1]] -> 0.5 A + 0.5 I = [[0.75, 0.25], [0, 1]] (rows sum to 1).
    attention = np.array([[[[0.5, 0.5], [0.0, 1.0]]]])
    np.testing.assert_allclose(rollout([attention]), [[[0.75, 0.25], [0.0, 1.0]]])
    # Two blocks multiply in order (later block on the left): M2 @ M1.
    second = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    expected = np.array([[1.0, 0.0], [0.25, 0.75]]) @ np.array([[0.75, 0.25], [0.0, 1.0]])
    np.testing.assert_allclose(rollout([attention, second])[0], expected)
    # discard_ratio 0.5 of 3 patch columns drops 1 per row: the smallest patch weight, even though the class
    # token's (column 0) is smaller; then 0.5 A + 0.5 I and the rows are renormalised.
    row = np.array([0.1, 0.2, 0.3, 0.4])
    attention = np.tile(row, (1, 1, 4, 1))
    mixed = 0.5 * np.array([0.1, 0.0, 0.3, 0.4]) + 0.5 * np.eye(4)[0]
    np.testing.assert_allclose(rollout([attention], discard_ratio=0.5)[0, 0], mixed / mixed.sum())


def test_attention_rollout_upsamples_bilinearly(vit_and_images):
    model, images, _ = vit_and_images
    grid = attention_rollout(model, images, upsample=False)
    full = attention_rollout(model, images)
    assert full.shape == (2, 8, 12) and full.dtype == np.float32
    expected = bilinear_half_pixel(grid, (8, 12))
    low, high = expected.min(axis=(1, 2), keepdims=True), expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(full, (expected - low) / (high - low), atol=1e-5)


def test_attention_rollout_under_mixed_precision(vit_and_images):
    model, images, _ = vit_and_images
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = VisionTransformer(**TINY)
    mixed.set_weights(model.get_weights())
    maps = attention_rollout(mixed, images, upsample=False)
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    # bfloat16 keeps ~3 significant digits; the maps still agree with float32 to a few percent.
    np.testing.assert_allclose(maps, attention_rollout(model, images, upsample=False), atol=0.1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SwinTransformer(image_size=8, patch_size=2, embed_dim=8, depths=(1,), num_heads=(2,), window_size=2,
                                 num_classes=2), "SwinTransformer .* use tfvit.vis.gradcam"),
        (lambda: VisionTransformer(**{**TINY, "class_token": False, "pooling": "mean"}), "no class token"),
        (lambda: VisionTransformer(**{**TINY, "attention": "performer_relu"}),
         "block 'blocks.0' .* uses PerformerAttention .*tfvit.vis.gradcam"),
    ],
)
def test_attention_rollout_rejects_other_models(make, message):
    model = make()
    images = np.zeros((1, *model.image_size, model.in_channels), np.float32)
    with pytest.raises(ValueError, match=message):
        attention_rollout(model, images)
    assert not rollout_applies(model)


def test_rollout_applies_to_class_token_vits(vit_and_images):
    assert rollout_applies(vit_and_images[0])


@pytest.mark.parametrize(
    "kwargs, images_shape, message",
    [
        ({"head_fusion": "sum"}, (1, 8, 12, 2), "head_fusion must be one of 'mean', 'max', 'min', got 'sum'"),
        ({"discard_ratio": 1.0}, (1, 8, 12, 2), r"discard_ratio must be a number in \[0, 1\), got 1.0"),
        ({"discard_ratio": -0.1}, (1, 8, 12, 2), "discard_ratio must be a number"),
        ({}, (8, 12, 2), "rank 4"),
        ({}, (1, 8, 8, 2), "do not match the model's input"),
    ],
)
def test_attention_rollout_rejects_bad_arguments(vit_and_images, kwargs, images_shape, message):
    model = vit_and_images[0]
    with pytest.raises(ValueError, match=message):
        attention_rollout(model, np.zeros(images_shape, np.float32), **kwargs)


def test_rollout_rejects_bad_weights():
    with pytest.raises(ValueError, match="at least one block"):
        rollout([])
    with pytest.raises(ValueError, match=r"\(batch, heads, tokens, tokens\), got \(2, 3, 3\)"):
        rollout([np.ones((2, 3, 3))])
