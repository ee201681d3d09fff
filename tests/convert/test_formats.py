import numpy as np
import pytest

from tfvit.convert import detect_format
from tfvit.convert.timm_layout import tfvit_path, to_keras_layout

FORMATS = (
    (["vit.embeddings.cls_token", "vit.encoder.layer.0.attention.attention.query.weight", "classifier.weight"],
     "Hugging Face transformers ViT"),
    (["embeddings.cls_token", "encoder.layer.0.attention.attention.query.weight", "pooler.dense.weight"],
     "Hugging Face transformers ViT"),
    (["vit.layers.0.attention.q_proj.weight"], "Hugging Face transformers ViT"),
    (["swin.encoder.layers.0.blocks.0.attention.self.query.weight", "classifier.weight"],
     "Hugging Face transformers Swin"),
    (["encoder.layers.1.blocks.0.attention.q_proj.weight"], "Hugging Face transformers Swin"),
    (["cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "head.weight"], "timm ViT"),
    (["layers.0.blocks.0.attn.qkv.weight", "layers.1.downsample.reduction.weight", "head.fc.weight"], "timm Swin"),
    (["layers.0.blocks.0.attn.qkv.weight", "layers.0.downsample.reduction.weight", "head.weight"],
     "Swin, official / timm < 0.9 layout (patch merging at the end of each stage)"),
)


def test_detects_the_format_by_names():
    # One test for all cases: each test pays for the suite's Keras session reset.
    for names, description in FORMATS:
        assert detect_format(names).description == description, names


def test_unknown_names_raise_with_examples():
    with pytest.raises(ValueError, match=r"unrecognised checkpoint.*conv1.weight.*Expected names like"):
        detect_format(["conv1.weight", "fc.weight", "layer1.0.bn1.weight"])


TIMM_TO_TFVIT = (
    ("cls_token", "cls_token/cls_token"),
    ("pos_embed", "pos_embed/pos_embed"),
    ("patch_embed.proj.weight", "patch_embed/proj/kernel"),
    ("patch_embed.norm.bias", "patch_embed/norm/beta"),
    ("blocks.11.norm1.weight", "blocks.11/norm1/gamma"),
    ("blocks.3.attn.qkv.bias", "blocks.3/attn/qkv/bias"),
    ("blocks.3.mlp.fc2.weight", "blocks.3/mlp/fc2/kernel"),
    ("layers.2.blocks.5.attn.relative_position_bias_table", "layers.2/blocks.5/attn/relative_position_bias_table"),
    ("layers.1.downsample.norm.weight", "layers.1/downsample/norm/gamma"),
    ("layers.1.downsample.reduction.weight", "layers.1/downsample/reduction/kernel"),
    ("norm.weight", "norm/gamma"),
    ("head.weight", "head/kernel"),
    ("head.fc.bias", "head/bias"),
)


def test_timm_names_map_to_tfvit_paths():
    for timm_name, path in TIMM_TO_TFVIT:
        assert tfvit_path(timm_name) == path


def test_torch_layouts_become_keras_layouts():
    linear = np.arange(6.0).reshape(2, 3)  # (out, in)
    np.testing.assert_array_equal(to_keras_layout("blocks.0/attn/proj/kernel", linear), linear.T)
    conv = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)  # (out, in, kh, kw)
    kernel = to_keras_layout("patch_embed/proj/kernel", conv)
    assert kernel.shape == (4, 5, 3, 2) and kernel[1, 2, 0, 1] == conv[1, 0, 1, 2]
    np.testing.assert_array_equal(to_keras_layout("norm/gamma", linear), linear)
    with pytest.raises(ValueError, match=r"patch_embed/proj/kernel: expected a 2-D .* got shape \(2, 3, 4\)"):
        to_keras_layout("patch_embed/proj/kernel", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="no tfvit counterpart for the timm parameter 'blocks.0.ls1.gamma'"):
        tfvit_path("blocks.0.ls1.gamma")
