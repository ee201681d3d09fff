"""Checkpoints that must not load quietly: NaN or infinite weights, a shard index pointing outside its folder, a
protocol-0 pickle named .safetensors. Tiny timm-named files written from a tfvit model's own weights (no torch)."""

import json
import pickle

import numpy as np
import pytest

from tfvit.convert import load_pretrained, read_safetensors
from tfvit.models import VisionTransformer

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def tiny_vit():
    return VisionTransformer(image_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0,
                             num_classes=3)


def timm_state(model):
    """``model``'s weights in timm's names and torch layouts: what load_pretrained reads back into it."""
    state = {}
    for variable in model.weights:
        array = variable.numpy()
        if variable.path in ("cls_token/cls_token", "pos_embed/pos_embed"):
            state[variable.path.split("/")[0]] = array
            continue
        module, leaf = variable.path.rsplit("/", 1)
        if leaf == "kernel":
            array = array.T if array.ndim == 2 else array.transpose(3, 2, 0, 1)
        name = {"kernel": "weight", "gamma": "weight", "bias": "bias", "beta": "bias"}[leaf]
        state[module.replace("/", ".") + "." + name] = np.ascontiguousarray(array)
    return state


def test_non_finite_tensors_are_refused_by_name_and_nothing_is_assigned(tmp_path):
    source = tiny_vit()
    state = timm_state(source)
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(state, str(path))
    target = tiny_vit()
    load_pretrained(target, path)  # the finite file loads
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    damaged = dict(state)
    damaged["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"].copy()
    damaged["blocks.0.attn.qkv.weight"][0, :2] = np.nan
    damaged["norm.bias"] = state["norm.bias"].copy()
    damaged["norm.bias"][3] = np.inf
    safetensors_numpy.save_file(damaged, str(path))
    fresh = tiny_vit()
    before = [w.numpy() for w in fresh.weights]
    with pytest.raises(ValueError) as refused:
        load_pretrained(fresh, path)
    message = str(refused.value)
    assert "NaN or infinite values in 2 of the tensors" in message
    assert "blocks.0.attn.qkv.weight (2 NaN of 192 values)" in message
    assert "norm.bias (1 infinite of 8 values)" in message
    assert "Nothing was assigned" in message
    for was, now in zip(before, fresh.weights):
        np.testing.assert_array_equal(was, now.numpy())


def test_many_non_finite_tensors_are_listed_with_a_count(tmp_path):
    state = {name: np.full_like(array, np.nan) for name, array in timm_state(tiny_vit()).items()}
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(state, str(path))
    with pytest.raises(ValueError, match=rf"in {len(state)} of the tensors it would load: .* and "
                                         rf"{len(state) - 8} more\."):
        load_pretrained(tiny_vit(), path)


@pytest.mark.parametrize("outside", ["../other/model.safetensors", "sub/../../other/model.safetensors", "ABSOLUTE"])
def test_a_shard_index_pointing_outside_its_folder_is_refused(tmp_path, outside):
    (tmp_path / "other").mkdir()
    (tmp_path / "ckpt" / "sub").mkdir(parents=True)  # so that the lexical escape is also a real one
    safetensors_numpy.save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "other" / "model.safetensors"))
    safetensors_numpy.save_file({"b": np.ones(2, np.float32)}, str(tmp_path / "ckpt" / "model-1.safetensors"))
    if outside == "ABSOLUTE":
        outside = str(tmp_path / "other" / "model.safetensors")
    weight_map = {"b": "model-1.safetensors", "a": outside}
    (tmp_path / "ckpt" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    how = "an absolute path" if outside.startswith("/") else "a path with '..'"
    with pytest.raises(ValueError, match=rf"refusing the shard index .*model.safetensors.index.json': its weight_map "
                                         rf"entry 'a' -> '{outside}' is {how}, outside the checkpoint's folder"):
        read_safetensors(tmp_path / "ckpt")


def test_a_shard_index_that_is_not_one_is_explained(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match=r"is not a readable shard index .*\"weight_map\" maps tensor names"):
        read_safetensors(tmp_path)


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_headerless_pickle_named_safetensors_is_called_a_pickle(tmp_path, protocol):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0], "b": [0.5]}, protocol=protocol))
    with pytest.raises(ValueError) as refused:
        read_safetensors(path)
    message = str(refused.value)
    assert message.startswith(f"refusing to read '{path}': it is a Python pickle (protocol {protocol}), not a "
                              f"safetensors file")
    assert "interrupted download" not in message
    assert "torch.load" in message and "safetensors.torch.save_file" in message  # the conversion hint


def test_a_folder_with_a_stale_single_file_beside_shards_is_refused_and_each_file_loads_its_own(tmp_path):
    old, new = tiny_vit(), tiny_vit()
    assert not np.array_equal(old.get_layer("head").kernel.numpy(), new.get_layer("head").kernel.numpy())
    safetensors_numpy.save_file(timm_state(old), str(tmp_path / "model.safetensors"))
    state = timm_state(new)
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[:5], "model-00002-of-00002.safetensors": names[5:]}
    for shard, members in shards.items():
        safetensors_numpy.save_file({name: state[name] for name in members}, str(tmp_path / shard))
    weight_map = {name: shard for shard, members in shards.items() for name in members}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match=r"holds two checkpoints: model\.safetensors \(modified .*\) and the shard "
                                         r"index model\.safetensors\.index\.json \(modified .*Delete the stale one"):
        load_pretrained(tiny_vit(), tmp_path)
    for path, source in ((tmp_path / "model.safetensors", old), (tmp_path / "model.safetensors.index.json", new)):
        model = tiny_vit()
        load_pretrained(model, path)
        for loaded, expected in zip(model.weights, source.weights):
            np.testing.assert_array_equal(loaded.numpy(), expected.numpy())
