import numpy as np
import pytest

from tfvit.models import SwinTransformer
from tfvit.models.swin import stage_resolutions
from tests import reference

TINY = dict(patch_size=2, embed_dim=8, depths=(2, 1), num_heads=(2, 2), window_size=2, mlp_ratio=2.0,
            num_classes=3, drop_path_rate=0.0)


def test_swin_forward_matches_reference():
    # 10x10 images -> 5x5 grid (padded to the window 2) -> merged to 3x3 (odd side padded).
    model = SwinTransformer(image_size=10, in_channels=2, **TINY)
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 2)).astype("float32")
    logits = model(x).numpy()
    w = reference.weights_of(model)
    assert model.stage_resolutions == [(5, 5), (3, 3)]
    for b in range(2):
        grid = reference.patchify(x[b].astype(np.float64), w["patch_embed/proj/kernel"], w["patch_embed/proj/bias"])
        grid = reference.layer_norm(grid, w["patch_embed/norm/gamma"], w["patch_embed/norm/beta"], 1e-5)
        grid = reference.swin_block(grid, w, "layers.0/blocks.0/", 2, window=2, shift=0)
        grid = reference.swin_block(grid, w, "layers.0/blocks.1/", 2, window=2, shift=1)
        grid = reference.patch_merging(grid, w, "layers.1/downsample/")
        grid = reference.swin_block(grid, w, "layers.1/blocks.0/", 2, window=2, shift=0)
        grid = reference.layer_norm(grid, w["norm/gamma"], w["norm/beta"], 1e-5)
        expected = grid.mean((0, 1)) @ w["head/kernel"] + w["head/bias"]
        np.testing.assert_allclose(logits[b], expected, atol=1e-4)


def test_swin_weight_names_follow_timm():
    model = SwinTransformer(image_size=8, **TINY)
    names = {w.path for w in model.weights}
    for expected in ["patch_embed/proj/kernel", "patch_embed/norm/gamma",
                     "layers.0/blocks.1/attn/relative_position_bias_table", "layers.0/blocks.0/attn/qkv/kernel",
                     "layers.1/downsample/reduction/kernel", "layers.1/downsample/norm/beta",
                     "layers.1/blocks.0/mlp/fc2/kernel", "norm/gamma", "head/kernel"]:
        assert expected in names


def test_official_stage_rule_at_224_and_small_grids():
    assert stage_resolutions((224, 224), (4, 4), 4) == [(56, 56), (28, 28), (14, 14), (7, 7)]
    model = SwinTransformer(image_size=32, patch_size=4, embed_dim=8, depths=(2, 2, 2), num_heads=(1, 2, 4),
                            window_size=7, num_classes=2)
    # 8x8 grid > 7: shifted windows (padded to 14); 4x4 and 2x2 <= 7: one window, no shift.
    assert model.stage_windows == [(7, 3), (4, 0), (2, 0)]
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 2)


@pytest.mark.parametrize("image_size, in_channels", [(32, 3), (28, 1), ((24, 40), 2)])
def test_swin_resolutions_and_channels(image_size, in_channels):
    model = SwinTransformer(image_size=image_size, in_channels=in_channels, **TINY)
    size = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    assert model(np.zeros((2, *size, in_channels), "float32")).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=1), "smaller than the patch size"),
        (dict(image_size=9), "not divisible by the patch size"),
        (dict(image_size=8, num_heads=(3, 2)), "num_heads=3 does not divide stage 0 width=8"),
        (dict(image_size=8, depths=(2,)), "one entry per stage"),
    ],
)
def test_swin_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SwinTransformer(**{**TINY, **kwargs})


@pytest.mark.parametrize("shape, message", [((8, 8, 3), "rank 4"), ((1, 8, 8, 2), "expects 3 input channel")])
def test_swin_rejects_bad_input(shape, message):
    with pytest.raises(ValueError, match=message):
        SwinTransformer(image_size=8, **TINY)(np.zeros(shape, "float32"))
