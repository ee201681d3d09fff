"""tfvit models loaded from Hugging Face transformers checkpoints compute what transformers computes.

Small random ViT / Swin models are saved with ``save_pretrained`` and loaded into tfvit; the logits
must agree with transformers' own (NCHW input there, NHWC here) to 1e-4.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import keras

import tfvit
from tfvit.convert import from_pretrained, infer_config, load_pretrained, read_safetensors
from tfvit.models import SwinTransformer, VisionTransformer

ATOL = 1e-4
VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
       "intermediate_size": 64, "num_labels": 5}
# 28 px, patch 2: grids 14 and 7 are padded to the window 4 (shifted blocks included), 4 = the window
# (one window, no shift). 20 px: grid 5 is padded to 8 with the shift active.
SWINS = {
    "padded_3_stages": {"image_size": 28, "patch_size": 2, "embed_dim": 16, "depths": [2, 2, 2],
                        "num_heads": [2, 2, 4], "window_size": 4, "num_labels": 5},
    "padded_shifted_5": {"image_size": 20, "patch_size": 2, "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 4],
                         "window_size": 4, "num_labels": 5},
}


def _randomise(model, seed):
    """Replace every parameter (LayerNorms included) with random values; position tables N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 1.0 if "position_embeddings" in name else 0.2
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def _images(size, seed=0):
    return np.random.default_rng(seed).normal(size=(2, size, size, 3)).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory):
    model = _randomise(transformers.ViTForImageClassification(transformers.ViTConfig(**VIT)), seed=0)
    folder = tmp_path_factory.mktemp("hf_vit")
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


@pytest.fixture(scope="module")
def hf_swins(tmp_path_factory):
    """{name: (transformers model, save_pretrained folder)} for each configuration of SWINS."""
    saved = {}
    for name, config in SWINS.items():
        model = _randomise(transformers.SwinForImageClassification(transformers.SwinConfig(**config)), seed=1)
        folder = tmp_path_factory.mktemp(f"hf_swin_{name}")
        model.save_pretrained(folder, safe_serialization=True)
        saved[name] = model, folder
    return saved


def test_vit_logits_match_transformers(hf_vit):
    hf, folder = hf_vit
    x = _images(32)
    with torch.no_grad():
        expected = hf(pixel_values=_nchw(x)).logits.numpy()
    family, config = infer_config(folder)
    assert family == "vit" and config["norm_epsilon"] == 1e-12 and config["num_heads"] == 4
    np.testing.assert_allclose(from_pretrained(folder)(x).numpy(), expected, atol=ATOL)
    # Built by hand, loaded from the file itself.
    model = VisionTransformer(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0,
                              num_classes=5, norm_epsilon=1e-12)
    report = load_pretrained(model, folder / "model.safetensors")
    assert len(report.loaded) == len(model.weights) and not report.resized and not report.skipped
    np.testing.assert_allclose(model(x).numpy(), expected, atol=ATOL)


def test_swin_logits_match_transformers(hf_swins):
    for hf, folder in hf_swins.values():
        x = _images(hf.config.image_size)
        with torch.no_grad():
            expected = hf(pixel_values=_nchw(x)).logits.numpy()
        model = from_pretrained(folder)
        assert model.load_report.format == "Hugging Face transformers Swin" and not model.load_report.resized
        np.testing.assert_allclose(model(x).numpy(), expected, atol=ATOL)


def test_transformers_5_in_memory_names_load_too(hf_vit, tmp_path):
    hf, _ = hf_vit
    hf.save_pretrained(tmp_path, save_original_format=False)
    assert "vit.layers.0.attention.q_proj.weight" in read_safetensors(tmp_path)
    x = _images(32)
    with torch.no_grad():
        expected = hf(pixel_values=_nchw(x)).logits.numpy()
    np.testing.assert_allclose(from_pretrained(tmp_path)(x).numpy(), expected, atol=ATOL)

    swin = _randomise(transformers.SwinForImageClassification(transformers.SwinConfig(**SWINS["padded_3_stages"])), 2)
    swin.save_pretrained(tmp_path / "swin", save_original_format=False)
    assert "swin.encoder.layers.0.blocks.0.attention.relative_position_bias.relative_position_bias_table" in (
        read_safetensors(tmp_path / "swin"))
    x = _images(28)
    with torch.no_grad():
        expected = swin(pixel_values=_nchw(x)).logits.numpy()
    np.testing.assert_allclose(from_pretrained(tmp_path / "swin")(x).numpy(), expected, atol=ATOL)


def test_bare_backbones_give_their_pooled_features(tmp_path):
    hf = _randomise(transformers.ViTModel(transformers.ViTConfig(**VIT)), seed=3)  # with its tanh pooler
    hf.save_pretrained(tmp_path / "vit")
    x = _images(32)
    with torch.no_grad():
        expected = hf(pixel_values=_nchw(x)).last_hidden_state[:, 0].numpy()
    model = from_pretrained(tmp_path / "vit")
    assert model.get_config()["num_classes"] == 0
    np.testing.assert_allclose(model(x).numpy(), expected, atol=ATOL)
    assert sorted(model.load_report.skipped) == ["pooler.dense.bias", "pooler.dense.weight"]

    swin = _randomise(transformers.SwinModel(transformers.SwinConfig(**SWINS["padded_shifted_5"])), seed=3)
    swin.save_pretrained(tmp_path / "swin")  # names without the "swin." prefix, no classifier
    x = _images(20)
    with torch.no_grad():
        expected = swin(pixel_values=_nchw(x)).pooler_output.numpy()  # mean of the normalised tokens
    np.testing.assert_allclose(from_pretrained(tmp_path / "swin")(x).numpy(), expected, atol=ATOL)


def test_new_classifier_keeps_the_backbone(hf_vit, capsys):
    hf, folder = hf_vit
    model = from_pretrained(folder, num_classes=7)
    assert "new randomly initialised head for 7 classes (the checkpoint's classifier has 5 classes)" in (
        capsys.readouterr().out)
    report = model.load_report
    assert sorted(report.skipped) == ["classifier.bias", "classifier.weight"]
    assert report.initialised == ["head/kernel", "head/bias"]
    x = _images(32)
    features = keras.Model(model.input, model.get_layer("pool").output)(x).numpy()
    with torch.no_grad():
        expected = hf.vit(pixel_values=_nchw(x)).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(features, expected, atol=ATOL)
    assert model(x).shape == (2, 7)


def test_position_table_is_resized_for_another_image_size(hf_vit):
    hf, folder = hf_vit
    model = from_pretrained(folder, image_size=48)  # 4x4 patch grid -> 6x6
    assert model.load_report.resized == ["pos_embed/pos_embed: (1, 17, 32) -> (1, 37, 32)"]
    table = model.get_layer("pos_embed").pos_embed.numpy()
    source = hf.vit.embeddings.position_embeddings.detach()
    # timm's resample_abs_pos_embed: bicubic, align_corners=False, antialias=True (Keys' kernel, a = -0.5).
    grid = source[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False, antialias=True)
    expected = expected.permute(0, 2, 3, 1).reshape(1, 36, 32).numpy()
    np.testing.assert_array_equal(table[:, :1], source[:, :1].numpy())  # the class token's position is kept
    # The table is N(0, 1); TensorFlow's bicubic and torch's antialiased one differ by < 5e-3 on such tables
    # (border handling, float32 weights), far below the 0.3 that another kernel (a = -0.75) gives.
    np.testing.assert_allclose(table[:, 1:], expected, atol=5e-3)
    assert model(_images(48)).shape == (2, 5)


def test_swin_bias_tables_are_resized_where_the_window_shrinks(tmp_path):
    hf = _randomise(transformers.SwinForImageClassification(transformers.SwinConfig(**SWINS["padded_3_stages"])), 4)
    hf.save_pretrained(tmp_path)
    # 12 px: grids 6 (window 4, padded), 3 and 2: smaller than the window, which becomes 3 and 2.
    model = from_pretrained(tmp_path, image_size=12)
    assert model.stage_windows == [(4, 2), (3, 0), (2, 0)]
    state = read_safetensors(tmp_path)
    resized = []
    for stage, window in enumerate((4, 3, 2)):
        for block in range(2):
            table = state[f"swin.encoder.layers.{stage}.blocks.{block}.attention.self.relative_position_bias_table"]
            ours = model.get_layer(f"layers.{stage}").blocks[block].attn.relative_position_bias_table.numpy()
            side = 2 * window - 1
            image = torch.from_numpy(table).T.reshape(1, -1, 7, 7)
            expected = torch.nn.functional.interpolate(image, size=(side, side), mode="bicubic", align_corners=False)
            np.testing.assert_allclose(ours, expected.reshape(table.shape[1], -1).T.numpy(), atol=1e-5)
            if window != 4:
                resized.append(f"layers.{stage}/blocks.{block}/attn/relative_position_bias_table")
    assert [line.split(":")[0] for line in model.load_report.resized] == resized
    assert model(_images(12)).shape == (2, 5)


@pytest.fixture(scope="module")
def hf_cifar(tmp_path_factory):
    """A transformers ViT with the architecture of the registry's vit_cifar_patch4_32, 5 classes."""
    config = transformers.ViTConfig(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=6,
                                    num_attention_heads=3, intermediate_size=384, num_labels=5)
    model = _randomise(transformers.ViTForImageClassification(config), seed=5)
    folder = tmp_path_factory.mktemp("hf_cifar")
    model.save_pretrained(folder)
    return model, folder


def test_create_model_loads_a_pretrained_checkpoint(hf_cifar, capsys):
    hf, folder = hf_cifar
    x = _images(32)
    with torch.no_grad():
        expected = hf(pixel_values=_nchw(x)).logits.numpy()
    model = tfvit.create_model("vit_cifar_patch4_32", pretrained=folder / "model.safetensors")
    assert model.get_config()["num_classes"] == 5 and model.get_config()["norm_epsilon"] == 1e-12
    np.testing.assert_allclose(model(x).numpy(), expected, atol=ATOL)

    model = tfvit.create_model("vit_cifar_patch4_32", pretrained=folder, num_classes=10, image_size=48)
    assert "new randomly initialised head for 10 classes" in capsys.readouterr().out
    assert model(_images(48)).shape == (2, 10)
    assert model.get_layer("pos_embed").pos_embed.shape == (1, 1 + 12 * 12, 192)


def _save(tensors, path):
    safetensors_numpy.save_file(tensors, str(path))
    return path


def test_checkpoint_of_another_family_is_refused(hf_vit, hf_swins):
    vit_model = VisionTransformer(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5)
    with pytest.raises(ValueError, match=r"is a Hugging Face transformers Swin checkpoint, but the model is a "
                                         r"VisionTransformer; build a SwinTransformer"):
        load_pretrained(vit_model, hf_swins["padded_3_stages"][1])
    swin_model = SwinTransformer(image_size=32, patch_size=2, embed_dim=16, depths=(2,), num_heads=(2,),
                                 window_size=4, num_classes=5)
    with pytest.raises(ValueError, match=r"transformers ViT checkpoint, but the model is a SwinTransformer"):
        load_pretrained(swin_model, hf_vit[1])
    with pytest.raises(ValueError, match=r"model must be a tfvit VisionTransformer or SwinTransformer, got Sequential"):
        load_pretrained(keras.Sequential([keras.layers.Dense(2)]), hf_vit[1])


def test_checkpoint_of_another_size_is_refused_and_nothing_is_assigned(hf_vit, tmp_path):
    file = _save(read_safetensors(hf_vit[1]), tmp_path / "model.safetensors")  # without its config.json
    common = {"image_size": 32, "patch_size": 8, "num_classes": 5}

    deeper = VisionTransformer(embed_dim=32, depth=3, num_heads=4, mlp_ratio=2.0, **common)
    before = deeper.get_layer("cls_token").cls_token.numpy()
    with pytest.raises(ValueError, match=r"12 model variables have no checkpoint tensor: blocks.2/norm1/gamma"):
        load_pretrained(deeper, file)
    np.testing.assert_array_equal(deeper.get_layer("cls_token").cls_token.numpy(), before)

    shallower = VisionTransformer(embed_dim=32, depth=1, num_heads=4, mlp_ratio=2.0, **common)
    with pytest.raises(ValueError, match=r"checkpoint tensors have no model variable: vit.encoder.layer.1"):
        load_pretrained(shallower, file)

    wider = VisionTransformer(embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, **common)
    with pytest.raises(ValueError, match=r"31 checkpoint tensors do not fit the model's shapes.*: "
                                         r"patch_embed/proj/kernel: checkpoint \(8, 8, 3, 32\) \(from "
                                         r"vit.embeddings.patch_embeddings.projection.weight\) vs model "
                                         r"\(8, 8, 3, 64\)"):
        load_pretrained(wider, file)

    # Heads do not show in any shape: config.json beside the checkpoint tells them.
    other_heads = VisionTransformer(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, **common)
    with pytest.raises(ValueError, match=r"num_heads=4 \(its config.json\), but the model has num_heads=2"):
        load_pretrained(other_heads, hf_vit[1])


def test_strict_false_loads_the_matching_part(hf_vit, tmp_path):
    file = _save(read_safetensors(hf_vit[1]), tmp_path / "model.safetensors")
    model = VisionTransformer(image_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, mlp_ratio=2.0,
                              num_classes=5)
    report = load_pretrained(model, file, strict=False)
    assert report.missing == [w.path for w in model.weights if w.path.startswith("blocks.2/")]
    np.testing.assert_array_equal(model.get_layer("norm").gamma.numpy(), read_safetensors(file)["vit.layernorm.weight"])


def test_broken_and_unsupported_checkpoints_are_explained(hf_vit, tmp_path):
    state = read_safetensors(hf_vit[1])
    model = VisionTransformer(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0,
                              num_classes=5)
    no_key = {k: v for k, v in state.items() if k != "vit.encoder.layer.1.attention.attention.key.weight"}
    with pytest.raises(ValueError, match=r"query/key/value projections for 'blocks.1.attn.qkv.weight' are incomplete"):
        load_pretrained(model, _save(no_key, tmp_path / "a.safetensors"))
    masked = dict(state, **{"vit.embeddings.mask_token": np.zeros((1, 1, 32), np.float32)})
    with pytest.raises(ValueError, match=r"no model variable: vit.embeddings.mask_token \(a masked-image-modeling"):
        load_pretrained(model, _save(masked, tmp_path / "b.safetensors"))
