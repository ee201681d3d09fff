import pytest

import tfvit

REQUIRED = [
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_base_patch32_224",
    "vit_large_patch16_224", "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
    "swin_base_patch4_window7_224", "swin_large_patch4_window7_224",
    "vit_cifar_patch4_32", "vit_mnist_patch4_28", "swin_cifar_patch2_window4_32", "swin_mnist_patch2_window4_28",
]


def test_registry_lists_the_required_models():
    assert set(REQUIRED) <= set(tfvit.list_models())
    assert tfvit.list_models("swin_*") == sorted(n for n in REQUIRED if n.startswith("swin_"))


def test_create_model_applies_overrides():
    model = tfvit.create_model("vit_mnist_patch4_28", num_classes=3, in_channels=3, image_size=16, depth=1)
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 3)
    assert model.name == "vit_mnist_patch4_28"
    assert len([l for l in model.layers if l.name.startswith("blocks.")]) == 1


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown model name 'swin_tiny_patch4_window7'.*swin_tiny_patch4_window7_224"):
        tfvit.create_model("swin_tiny_patch4_window7")


# Published figures at 224x224 with 1000 classes: parameters and MACs ("FLOPs" in the papers' tables,
# counted as multiply-adds): DeiT (Touvron et al. 2021) Table 1 for ViT-Ti/16 and ViT-B/16, Swin
# (Liu et al. 2021) Table 1 for Swin-T and Swin-B.
PUBLISHED = {
    "vit_tiny_patch16_224": (5.7e6, 1.3e9),
    "vit_base_patch16_224": (86.6e6, 17.6e9),
    "swin_tiny_patch4_window7_224": (28.3e6, 4.5e9),
    "swin_base_patch4_window7_224": (88e6, 15.4e9),
}


def agrees(measured, published, significant_step):
    """Within 3%, or within the rounding of the published figure (half its last digit)."""
    return abs(measured - published) <= max(0.03 * published, significant_step / 2)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameters_and_macs_match_published_figures(name):
    params, macs = PUBLISHED[name]
    result = tfvit.stats(tfvit.create_model(name))
    assert abs(result.params - params) <= 0.03 * params, result
    # DeiT prints 1.3 for ViT-Ti, a rounding of 1.25-1.35 G; the others agree within 3% outright.
    assert agrees(result.macs, macs, 0.1e9), result
    assert abs(result.macs - macs) <= 0.03 * macs or name == "vit_tiny_patch16_224", result
