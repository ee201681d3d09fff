import re
import warnings

import keras
import numpy as np
import pytest

from tests.timm_import import import_timm

from tfvit.models.resnet import ResNet
from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer
from tfvit.training import GradientAccumulationModel, build_optimizer
from tfvit.training.finetune import freeze_for_finetuning, layer_decay_multipliers, layer_ids

TINY = {
    "vit": (VisionTransformer, {"image_size": 8, "patch_size": 4, "in_channels": 1, "num_classes": 3, "embed_dim": 8,
                                "depth": 4, "num_heads": 2, "name": "vit"}),
    "swin": (SwinTransformer, {"image_size": 16, "patch_size": 2, "in_channels": 1, "num_classes": 3, "embed_dim": 8,
                               "depths": (1, 1, 2), "num_heads": (2, 2, 2), "window_size": 2, "drop_path_rate": 0.0,
                               "name": "swin"}),
    "resnet": (ResNet, {"image_size": 8, "in_channels": 1, "num_classes": 3, "depths": (2, 2, 1, 1),
                        "widths": (4, 8, 8, 8), "stem": "cifar", "name": "resnet"}),
}


def tiny(family, **kwargs):
    model_class, config = TINY[family]
    return model_class(**{**config, **kwargs})


def top_name(path):
    return path.split("/")[0]


# Top-level layers frozen by each mode, with the default K (ViT: 4 // 2 blocks; Swin, ResNet: all stages but the last).
EXPECTED_FROZEN = {
    ("vit", "partial"): {"patch_embed", "cls_token", "pos_embed", "blocks.0", "blocks.1"},
    ("vit", "head"): {"patch_embed", "cls_token", "pos_embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "norm"},
    ("swin", "partial"): {"patch_embed", "layers.0", "layers.1"},
    ("swin", "head"): {"patch_embed", "layers.0", "layers.1", "layers.2", "norm"},
    ("resnet", "partial"): {"conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0"},
    ("resnet", "head"): {"conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer4.0"},
}


@pytest.mark.parametrize("family", ["vit", "swin", "resnet"])
@pytest.mark.parametrize("mode", ["full", "partial", "head"])
def test_modes_freeze_the_expected_layers(family, mode):
    model = tiny(family)
    learnable = {v.path: int(np.prod(v.shape)) for v in model.trainable_weights}
    summary = freeze_for_finetuning(model, mode)
    frozen = EXPECTED_FROZEN.get((family, mode), set())
    assert set(summary.frozen_layers) == frozen
    expected = {p for p in learnable if top_name(p) not in frozen}
    assert {v.path for v in model.trainable_weights} == expected
    assert summary.trainable_params == sum(learnable[p] for p in expected)
    assert summary.trainable_params + summary.frozen_params == sum(learnable.values())
    assert summary.frozen_blocks == ({"vit": 2, "swin": 2, "resnet": 3}[family] if mode == "partial" else None)
    if mode == "head":
        assert {top_name(p) for p in expected} == {"fc" if family == "resnet" else "head"}


@pytest.mark.parametrize("family, k, frozen", [
    ("vit", 0, {"patch_embed", "cls_token", "pos_embed"}),
    ("vit", 4, {"patch_embed", "cls_token", "pos_embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3"}),
    ("swin", 1, {"patch_embed", "layers.0"}),
    ("resnet", 1, {"conv1", "bn1", "layer1.0", "layer1.1"}),
    ("resnet", 4, {"conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer4.0"}),
])
def test_partial_freezes_the_first_k_blocks_or_stages(family, k, frozen):
    model = tiny(family)
    summary = freeze_for_finetuning(model, "partial", frozen_blocks=k)
    assert set(summary.frozen_layers) == frozen and summary.frozen_blocks == k
    assert summary.unit == ("block" if family == "vit" else "stage")
    trained = {top_name(v.path) for v in model.trainable_weights}
    assert trained.isdisjoint(frozen)
    assert trained >= ({"fc"} if family == "resnet" else {"norm", "head"})


def test_full_undoes_an_earlier_freeze_and_wrappers_are_accepted():
    model = tiny("resnet")
    everything = len(model.trainable_weights)
    wrapped = GradientAccumulationModel(model, accum=2)
    assert freeze_for_finetuning(wrapped, "head").trainable_params == 8 * 3 + 3
    assert [v.path for v in model.trainable_weights] == ["fc/kernel", "fc/bias"]
    summary = freeze_for_finetuning(model, "full")
    assert len(model.trainable_weights) == everything and summary.frozen_params == 0 and not summary.frozen_layers


def random_batch(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *model.input_shape[1:])).astype("float32"), np.arange(n) % 3


@pytest.mark.parametrize("family", ["vit", "swin", "resnet"])
@pytest.mark.parametrize("mode", ["partial", "head"])
def test_frozen_weights_stay_bit_identical_in_training(family, mode):
    model = tiny(family)
    freeze_for_finetuning(model, mode)
    frozen = EXPECTED_FROZEN[(family, mode)]
    before = {v.path: v.numpy().copy() for v in model.weights}
    # Eager fit: the same train step and trainable-variable selection as the compiled one, without tracing.
    model.compile(optimizer=build_optimizer("adamw", 1e-2, weight_decay=0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    x, y = random_batch(model)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # two updates
    for v in model.weights:
        if top_name(v.path) in frozen:  # weights and BatchNorm moving statistics alike
            np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
        elif v.trainable or "moving" in v.path:
            assert not np.array_equal(v.numpy(), before[v.path]), f"{v.path} should have trained"


def test_frozen_batch_norm_runs_in_inference_mode():
    model = tiny("resnet", image_size=16)
    rng = np.random.default_rng(1)
    for v in model.weights:  # moving statistics unlike any batch's, so that the two modes differ
        if v.path.endswith("moving_mean"):
            v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
        elif v.path.endswith("moving_variance"):
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
    x, _ = random_batch(model)
    # Trainable BN normalises with the batch statistics: the two modes differ.
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy(), atol=1e-3)
    freeze_for_finetuning(model, "head")
    stats = {v.path: v.numpy().copy() for v in model.weights if "moving" in v.path}
    np.testing.assert_allclose(model(x, training=True).numpy(), model(x, training=False).numpy(), atol=1e-6)
    for v in model.weights:
        if "moving" in v.path:
            np.testing.assert_array_equal(v.numpy(), stats[v.path], err_msg=v.path)


def test_layer_decay_of_a_12_block_vit_follows_the_formula():
    decay = 0.65
    model = VisionTransformer(image_size=8, patch_size=4, in_channels=1, num_classes=3, embed_dim=8, depth=12,
                              num_heads=2)
    multipliers = layer_decay_multipliers(model, decay)
    assert set(multipliers) == {v.path for v in model.trainable_weights}
    # BEiT: id 0 embeddings, i + 1 block i, 13 the final norm and head; lr scale decay ** (13 - id).
    expected = {"patch_embed": decay ** 13, "cls_token": decay ** 13, "pos_embed": decay ** 13,
                "norm": 1.0, "head": 1.0, **{f"blocks.{i}": decay ** (12 - i) for i in range(12)}}
    for path, value in multipliers.items():
        assert value == pytest.approx(expected[top_name(path)], rel=1e-12), path
    assert multipliers["blocks.11/mlp/fc2/kernel"] == pytest.approx(0.65)
    assert multipliers["patch_embed/proj/kernel"] == pytest.approx(0.003697205891018715)  # 0.65 ** 13


def test_swin_counts_blocks_across_stages_and_merging_joins_the_next_block():
    model = tiny("swin", depths=(2, 2, 2))
    groups = {}
    for path, i in layer_ids(model).items():
        parts = path.split("/")
        groups.setdefault("/".join(parts[:2]) if parts[0].startswith("layers.") else parts[0], set()).add(i)
    assert groups == {
        "patch_embed": {0}, "layers.0/blocks.0": {1}, "layers.0/blocks.1": {2},
        "layers.1/downsample": {3}, "layers.1/blocks.0": {3}, "layers.1/blocks.1": {4},
        "layers.2/downsample": {5}, "layers.2/blocks.0": {5}, "layers.2/blocks.1": {6}, "norm": {7}, "head": {7},
    }
    multipliers = layer_decay_multipliers(model, 0.5)
    assert multipliers["layers.1/downsample/reduction/kernel"] == 0.5 ** 4
    assert multipliers["head/kernel"] == multipliers["norm/gamma"] == 1.0


def test_resnet_counts_blocks_across_stages():
    ids = layer_ids(tiny("resnet"))
    groups = {}
    for path, i in ids.items():
        groups.setdefault(top_name(path), set()).add(i)
    assert groups == {"conv1": {0}, "bn1": {0}, "layer1.0": {1}, "layer1.1": {2}, "layer2.0": {3}, "layer2.1": {4},
                      "layer3.0": {5}, "layer4.0": {6}, "fc": {7}}
    assert not any("moving" in p for p in ids)  # statistics never reach the optimizer


def test_multipliers_cover_only_what_still_trains():
    model = tiny("vit")
    everything = layer_decay_multipliers(model, 0.5)
    freeze_for_finetuning(model, "partial", frozen_blocks=3)
    partial = layer_decay_multipliers(model, 0.5)
    assert set(partial) == {v.path for v in model.trainable_weights}
    assert {top_name(p) for p in partial} == {"blocks.3", "norm", "head"}
    assert all(partial[p] == everything[p] for p in partial)  # the ids do not depend on the freezing


def timm_lr_scales(model, decay):
    """{parameter name: lr_scale} from timm's own param_groups_layer_decay."""
    from timm.optim import param_groups_layer_decay

    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups_layer_decay(model, weight_decay=0.0, layer_decay=decay)
    return {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}


def module_of(name):
    """The block-level module of a timm name or a tfvit path: 'blocks.3', 'layers.1.blocks.0',
    'layers.1.downsample', 'layer2.1', or the top-level module ('patch_embed', 'norm', 'fc', ...)."""
    parts = name.replace("/", ".").split(".")
    if parts[0] == "layers":
        return ".".join(parts[:4] if parts[2] == "blocks" else parts[:3])
    if parts[0] == "blocks" or re.fullmatch(r"layer\d+", parts[0]):
        return ".".join(parts[:2])
    return parts[0]


@pytest.mark.parametrize("family", ["vit", "swin", "resnet"])
def test_layer_decay_matches_timm(family):
    """timm (timm/optim/_param_groups.py, param_groups_layer_decay, with each model's group_matcher) gives
    the same scales, except for ViT's and Swin's final norm, which timm groups with the last block."""
    timm = import_timm()
    decay = 0.65
    if family == "vit":
        ours = tiny("vit", depth=12)
        reference = timm.models.VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8,
                                                  depth=12, num_heads=2)
    elif family == "swin":
        ours = tiny("swin", depths=(2, 2, 2))
        reference = timm.models.SwinTransformer(img_size=16, patch_size=2, in_chans=1, num_classes=3, embed_dim=8,
                                                depths=(2, 2, 2), num_heads=(2, 2, 2), window_size=2)
    else:
        from timm.models.resnet import BasicBlock
        from timm.models.resnet import ResNet as TimmResNet

        ours = tiny("resnet", depths=(2, 2, 2, 2))
        reference = TimmResNet(BasicBlock, [2, 2, 2, 2], num_classes=3, in_chans=1)
    theirs = {}
    for name, scale in timm_lr_scales(reference, decay).items():
        theirs.setdefault(module_of(name), set()).add(scale)
    mine = {}
    for path, scale in layer_decay_multipliers(ours, decay).items():
        mine.setdefault(module_of(path), set()).add(scale)
    if "norm" in mine:
        assert mine["norm"] == {1.0} and theirs["norm"].pop() == pytest.approx(decay)
        del mine["norm"], theirs["norm"]
    assert set(mine) == set(theirs)
    for module, scales in mine.items():
        assert len(scales) == len(theirs[module]) == 1
        assert scales.pop() == pytest.approx(theirs[module].pop(), rel=1e-9), module


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "linear"}, "mode must be one of 'full', 'partial', 'head', got 'linear'"),
    ({"mode": "partial", "frozen_blocks": 5},
     r"frozen_blocks must be an integer in \[0, 4\] \(model 'vit' has 4 blocks\)"),
    ({"mode": "partial", "frozen_blocks": -1}, r"\[0, 4\].*got -1"),
    ({"mode": "partial", "frozen_blocks": True}, "got True"),
    ({"mode": "partial", "frozen_blocks": 1.5}, "got 1.5"),
    ({"mode": "full", "frozen_blocks": 1}, "frozen_blocks only applies to mode='partial'"),
    ({"mode": "head", "frozen_blocks": 0}, "frozen_blocks only applies to mode='partial'"),
])
def test_freeze_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        freeze_for_finetuning(tiny("vit"), **kwargs)


def test_rejects_models_without_blocks_or_head():
    with pytest.raises(ValueError, match=r"frozen_blocks must be an integer in \[0, 4\] \(model 'resnet' has 4 stages"):
        freeze_for_finetuning(tiny("resnet"), "partial", frozen_blocks=9)
    with pytest.raises(ValueError, match="has none .*num_classes=0"):
        freeze_for_finetuning(tiny("vit", num_classes=0), "head")
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="mlp")
    with pytest.raises(ValueError, match=r"model 'mlp' has no recognisable blocks.*\['dense'\]"):
        freeze_for_finetuning(plain, "partial")
    with pytest.raises(ValueError, match="no recognisable blocks"):
        layer_decay_multipliers(plain, 0.5)


@pytest.mark.parametrize("decay", [0.0, 1.5, -0.5, True, "0.5", float("nan")])
def test_layer_decay_rejects_bad_decay(decay):
    with pytest.raises(ValueError, match=r"decay must be a float in \(0, 1\]"):
        layer_decay_multipliers(tiny("vit"), decay)


@pytest.mark.parametrize("family", ["vit", "resnet"])
def test_a_saved_partially_frozen_model_reloads_frozen_with_its_optimizer_state(family, tmp_path):
    model = tiny(family)
    freeze_for_finetuning(model, "partial")
    trainable = [v.path for v in model.trainable_weights]
    model.compile(optimizer=build_optimizer("adamw", 1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype("float32")
    y = np.array([0, 1, 2, 0])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Keras warns when it skips optimizer variables
        loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [v.path for v in loaded.trainable_weights] == trainable
    # Every optimizer slot came back (Keras skips them all, with a warning, when the counts differ).
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)

