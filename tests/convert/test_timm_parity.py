"""tfvit models loaded from timm checkpoints compute what timm computes.

timm's ViT and Swin modules run unchanged (imported without torchvision: see tests/timm_import.py).
"""

import numpy as np
import pytest

from tests.timm_import import import_timm

timm = import_timm()
safetensors_torch = pytest.importorskip("safetensors.torch")
torch = pytest.importorskip("torch")

from timm.models import swin_transformer as timm_swin  # noqa: E402
from timm.models import vision_transformer as timm_vit  # noqa: E402

from tfvit.convert import load_pretrained, read_safetensors  # noqa: E402
from tfvit.models import SwinTransformer, VisionTransformer  # noqa: E402

ATOL = 1e-4
VIT = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0, "num_classes": 5}
# 32 px, patch 2: grids 16 and 8 (shifted windows), 4 (= the window: no shift) and 2 (smaller than the
# window, which becomes 2). No grid is padded: timm rolls before padding where the official code and
# transformers pad before rolling (tfvit does the latter), so padded shifted stages differ in timm.
SWIN = {"patch_size": 2, "embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (2, 2, 4, 4), "window_size": 4,
        "num_classes": 5}


def _randomise(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def _logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def _images(size):
    return np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def timm_vit_file(tmp_path_factory):
    model = _randomise(timm_vit.VisionTransformer(img_size=32, **VIT), seed=0)
    path = tmp_path_factory.mktemp("timm_vit") / "model.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    return model, path


def test_vit_logits_match_timm(timm_vit_file):
    reference, path = timm_vit_file
    model = VisionTransformer(image_size=32, **VIT)  # timm's LayerNorm epsilon 1e-6 is tfvit's default
    report = load_pretrained(model, path)
    assert report.format == "timm ViT" and len(report.loaded) == len(model.weights)
    x = _images(32)
    np.testing.assert_allclose(model(x).numpy(), _logits(reference, x), atol=ATOL)


def test_vit_at_another_resolution_matches_timms_own_resampling(timm_vit_file):
    reference, path = timm_vit_file
    resized = timm_vit.VisionTransformer(img_size=48, **VIT).eval()
    # timm's loader resamples the position table (bicubic, antialiased) as it loads.
    resized.load_state_dict(timm_vit.checkpoint_filter_fn(reference.state_dict(), resized))
    model = VisionTransformer(image_size=48, **VIT)
    load_pretrained(model, path)
    ours = model.get_layer("pos_embed").pos_embed.numpy()
    np.testing.assert_allclose(ours, resized.pos_embed.detach().numpy(), atol=1e-3)  # table std 0.2
    x = _images(48)
    # The tables agree to ~1e-3 of their scale (TensorFlow's and torch's bicubic resamplers), so the
    # logits are compared at 1e-3 rather than 1e-4.
    np.testing.assert_allclose(model(x).numpy(), _logits(resized, x), atol=1e-3)


@pytest.fixture(scope="module")
def timm_swin_model():
    return _randomise(timm_swin.SwinTransformer(img_size=32, **SWIN), seed=1)


def test_swin_logits_match_timm(timm_swin_model, tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(timm_swin_model.state_dict(), str(path))
    model = SwinTransformer(image_size=32, **SWIN)
    assert model.stage_windows == [(4, 2), (4, 2), (4, 0), (2, 0)]
    report = load_pretrained(model, path)
    assert report.format == "timm Swin" and not report.resized
    x = _images(32)
    np.testing.assert_allclose(model(x).numpy(), _logits(timm_swin_model, x), atol=ATOL)


def _official_layout(state_dict, model):
    """timm's current Swin state dict as the official code (and timm < 0.9) saved it: patch merging at the
    end of the previous stage, a plain ``head``, and the index buffers they stored."""
    old = {}
    for name, value in state_dict.items():
        parts = name.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
        name = ".".join(parts).replace("head.fc.", "head.")
        old[name] = value
    for name, module in model.named_modules():
        if hasattr(module, "relative_position_index"):
            old[f"{name}.relative_position_index"] = module.relative_position_index.clone()
    return old


def test_official_layout_swin_loads(timm_swin_model, tmp_path):
    current = timm_swin_model.state_dict()
    old = _official_layout(current, timm_swin_model)
    assert "layers.0.downsample.reduction.weight" in old and "layers.3.downsample.reduction.weight" not in old
    # timm's own converter takes the constructed file back to its current layout: it is the old layout.
    back = timm_swin.checkpoint_filter_fn(dict(old), timm_swin_model)
    assert sorted(back) == sorted(current) and all(torch.equal(back[k], current[k]) for k in current)
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in old.items()}, str(path))
    model = SwinTransformer(image_size=32, **SWIN)
    report = load_pretrained(model, path)
    assert report.format.startswith("Swin, official")
    assert sorted(report.skipped) == sorted(k for k in old if k.endswith("relative_position_index"))
    x = _images(32)
    np.testing.assert_allclose(model(x).numpy(), _logits(timm_swin_model, x), atol=ATOL)
    assert sorted(read_safetensors(path)) == sorted(old)
