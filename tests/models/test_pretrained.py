"""The registry's default checkpoints (tfvit/models/pretrained.py) are timm's: the hub id of timm's default
pretrained tag for each architecture, with that tag's mean, std, input size and interpolation, as timm's own
table (``timm.models.get_pretrained_cfg``) gives them; the README's table lists the same."""

import re
from pathlib import Path

import numpy as np
import pytest

import tfvit
from tfvit.models import Preprocessing, model_config, pretrained_source
from tfvit.models.pretrained import pretrained_models

README = Path(__file__).resolve().parents[2] / "README.md"
# The registry's ImageNet configurations: every one of them has a public checkpoint.
IMAGENET = [name for name in tfvit.list_models() if name.startswith(("vit_", "swin_")) and name.endswith("_224")]


def test_every_imagenet_vit_and_swin_has_a_default_checkpoint():
    assert tfvit.list_models(pretrained=True) == sorted(IMAGENET) == pretrained_models()
    assert tfvit.list_models("swin_*", pretrained=True) == [n for n in sorted(IMAGENET) if n.startswith("swin_")]
    with pytest.raises(ValueError, match="'resnet18_cifar' has no public pretrained checkpoint"):
        pretrained_source("resnet18_cifar")
    with pytest.raises(ValueError, match="has no public pretrained checkpoint"):
        tfvit.create_model("vit_cifar_patch4_32", pretrained=True)
    with pytest.raises(TypeError, match="pretrained must be True, False, None, 'hf-hub:ORG/NAME' or a checkpoint"):
        tfvit.create_model("vit_cifar_patch4_32", pretrained=1)


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_the_default_checkpoint_and_preprocessing_are_timms(name):
    from tests.timm_import import import_timm

    import_timm()
    from timm.models import get_pretrained_cfg

    timm_cfg = get_pretrained_cfg(name)  # the default tag's
    source = pretrained_source(name)
    assert source.hub_id == timm_cfg.hf_hub_id and source.reference == f"hf-hub:{timm_cfg.hf_hub_id}"
    assert source.preprocessing == Preprocessing(timm_cfg.mean, timm_cfg.std, timm_cfg.input_size[1:],
                                                 timm_cfg.interpolation)
    _, _, config = model_config(name)
    assert (config["num_classes"], config["in_channels"], config["image_size"]) == (
        timm_cfg.num_classes, timm_cfg.input_size[0], timm_cfg.input_size[1])


def test_a_timm_swin_saved_as_on_the_hub_loads_into_the_registry_model(tmp_path):
    """Swin-T as timm writes its hub repositories (config.json with the architecture and pretrained_cfg): the
    registry model of the same name takes it whole and computes timm's logits."""
    from tests.timm_import import import_timm

    timm = import_timm()
    torch = pytest.importorskip("torch")
    from timm.models import save_for_hf

    torch.manual_seed(0)
    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    with torch.no_grad():
        reference.head.fc.weight.normal_()
    save_for_hf(reference, tmp_path, safe_serialization=True)
    model = tfvit.create_model("swin_tiny_patch4_window7_224", pretrained=str(tmp_path))
    assert model.preprocessing == pretrained_source("swin_tiny_patch4_window7_224").preprocessing
    images = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.std(expected) > 0.1
    np.testing.assert_allclose(model(images, training=False), expected, atol=1e-4)


def test_the_readme_table_lists_the_registry_checkpoints():
    text = README.read_text()
    start = text.index("| model | default checkpoint (`pretrained=True`) |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    assert sorted(rows) == pretrained_models()
    for name, (hub_id, mean, std, size, interpolation) in rows.items():
        source = pretrained_source(name)
        p = source.preprocessing
        assert hub_id == source.reference
        assert [float(v) for v in re.findall(r"[\d.]+", mean)] == list(p.mean)
        assert [float(v) for v in re.findall(r"[\d.]+", std)] == list(p.std)
        assert size == f"{p.image_size[0]}x{p.image_size[1]}" and interpolation == p.interpolation
