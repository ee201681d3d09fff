import json
import os
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest

from tfvit.convert import read_safetensors, read_safetensors_shapes

safetensors_numpy = pytest.importorskip("safetensors.numpy")

TENSORS = {
    "a": np.arange(6, dtype=np.float32).reshape(2, 3),
    "b": np.array([1.5, -2.0], dtype=np.float16),
    "c": np.arange(4, dtype=np.int64),
}


def _write(path, tensors=TENSORS):
    safetensors_numpy.save_file(tensors, str(path))
    return path


def test_reads_every_tensor_with_dtype_and_shape(tmp_path):
    out = read_safetensors(_write(tmp_path / "w.safetensors"))
    assert sorted(out) == ["a", "b", "c"]
    for name, value in TENSORS.items():
        assert out[name].dtype == value.dtype
        np.testing.assert_array_equal(out[name], value)
    assert read_safetensors_shapes(tmp_path / "w.safetensors") == {"a": (2, 3), "b": (2,), "c": (4,)}


def test_bfloat16_is_widened_to_float32(tmp_path):
    # A file written by hand from the format's definition: 8-byte header length, JSON header, raw data.
    values = np.array([1.5, -2.0, 0.15625, 2.0**34, -0.0, 7.0], dtype=np.float32)  # exact in bfloat16
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, len(raw)]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw)
    out = read_safetensors(path)["w"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.reshape(2, 3))
    assert read_safetensors_shapes(path) == {"w": (2, 3)}


def test_bfloat16_beside_other_dtypes_is_widened_and_float8_refused_by_name(tmp_path):
    # As transformers' save_pretrained writes a bfloat16 model: other dtypes (an int64 buffer) alongside.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    exact = np.array([[1.5, -2.0, 0.25], [2.0**34, -0.0, 7.0]], dtype=np.float32)  # exact in bfloat16
    path = _write(tmp_path / "mixed.safetensors", {"w": exact.astype(ml_dtypes.bfloat16), "a": TENSORS["a"],
                                                   "c": TENSORS["c"]})
    out = read_safetensors(path)
    assert out["w"].dtype == np.float32 and out["a"].dtype == np.float32 and out["c"].dtype == np.int64
    np.testing.assert_array_equal(out["w"], exact)
    np.testing.assert_array_equal(out["c"], TENSORS["c"])
    assert read_safetensors_shapes(path) == {"w": (2, 3), "a": (2, 3), "c": (4,)}
    # safetensors' numpy reader has no float8 type: a clear ValueError, and the shapes still read.
    path = _write(tmp_path / "f8.safetensors", {"w": exact.astype(ml_dtypes.float8_e4m3fn)})
    with pytest.raises(ValueError, match=r"cannot read tensor 'w' of dtype F8_E4M3 as a numpy array"):
        read_safetensors(path)
    assert read_safetensors_shapes(path) == {"w": (2, 3)}


def test_directory_and_sharded_checkpoint(tmp_path):
    (tmp_path / "single").mkdir()
    _write(tmp_path / "single" / "model.safetensors")
    assert sorted(read_safetensors(tmp_path / "single")) == ["a", "b", "c"]
    shards = tmp_path / "sharded"
    shards.mkdir()
    _write(shards / "model-00001-of-00002.safetensors", {"a": TENSORS["a"]})
    _write(shards / "model-00002-of-00002.safetensors", {"b": TENSORS["b"], "c": TENSORS["c"]})
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                  "c": "model-00002-of-00002.safetensors"}
    (shards / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    out = read_safetensors(shards)
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(out[name], value)


class _Payload:
    """Unpickling this creates a marker file: the refusal must never get that far."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def _assert_refused(path, what):
    with pytest.raises(ValueError) as error:
        read_safetensors(path)
    message = str(error.value)
    assert "refusing to read" in message and what in message
    # The message carries the conversion recipe.
    assert "torch.load" in message and "weights_only=True" in message
    assert "safetensors.torch.save_file" in message and "safe_serialization=True" in message


def test_pickle_is_refused_whatever_its_name_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    for name in ["model.safetensors", "weights.npy", "model"]:
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"w": _Payload(str(marker))}, protocol=4))
        _assert_refused(path, "a Python pickle (protocol 4)")
    assert not marker.exists()


def test_zip_archive_is_refused(tmp_path):
    path = tmp_path / "renamed.safetensors"
    with zipfile.ZipFile(path, "w") as archive:  # torch.save's container since torch 1.6
        archive.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    _assert_refused(path, "a zip archive")


def test_pytorch_extensions_are_refused(tmp_path):
    for suffix in [".bin", ".pt", ".pth", ".pkl", ".ckpt"]:
        path = _write(tmp_path / f"model{suffix}")  # even valid safetensors bytes under a pickle name
        _assert_refused(path, f"by its extension ({suffix})")


def test_directory_with_only_a_pickle_checkpoint_is_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"w": 1}, protocol=2))
    _assert_refused(tmp_path, "pytorch_model.bin")


def test_pickle_checkpoint_made_by_torch_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2), "payload": _Payload(str(marker))}, path)
    _assert_refused(path, "a zip archive")
    legacy = tmp_path / "legacy.safetensors"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    _assert_refused(legacy, "a Python pickle")
    assert not marker.exists()


def test_truncated_file_raises_a_clear_error(tmp_path):
    path = _write(tmp_path / "w.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"not a readable safetensors file.*interrupted download"):
        read_safetensors(path)


def test_corrupt_file_raises_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    for content in [b"", b"\x10\x00", b"garbage bytes that are not a header" * 3]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=r"w.safetensors.*not a readable safetensors file"):
            read_safetensors(path)


def test_missing_file_and_directory(tmp_path):
    _write(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match=r"model.safetensors' does not exist.*other.safetensors"):
        read_safetensors(tmp_path / "model.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no model.safetensors .* in the directory"):
        read_safetensors(empty)
    assert not os.path.exists(tmp_path / "model.safetensors")


def _both_checkpoints(folder):
    """``folder`` with a stale model.safetensors (TENSORS doubled, modified first) and a newer shard index whose
    two shards hold TENSORS: what transformers' save_pretrained leaves when it writes shards over one file."""
    folder.mkdir()
    _write(folder / "model.safetensors", {name: value * 2 for name, value in TENSORS.items()})
    _write(folder / "model-00001-of-00002.safetensors", {"a": TENSORS["a"]})
    _write(folder / "model-00002-of-00002.safetensors", {"b": TENSORS["b"], "c": TENSORS["c"]})
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                  "c": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    os.utime(folder / "model.safetensors", (1_700_000_000, 1_700_000_000))
    os.utime(folder / "model.safetensors.index.json", (1_700_086_400, 1_700_086_400))  # a day later
    return folder


def test_a_folder_with_both_a_single_file_and_a_shard_index_is_refused_and_each_file_reads_as_given(tmp_path):
    folder = _both_checkpoints(tmp_path / "both")
    single, index = str(folder / "model.safetensors"), str(folder / "model.safetensors.index.json")
    for read in (read_safetensors, read_safetensors_shapes):
        with pytest.raises(ValueError) as refused:
            read(folder)
        message = str(refused.value)
        for when in (1_700_000_000, 1_700_086_400):
            assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) in message
        assert "holds two checkpoints: model.safetensors (modified " in message
        assert "model.safetensors.index.json is the newer" in message and "Delete the stale one" in message
        assert f"pass the file to read: {single!r} or {index!r}" in message
    # A file given explicitly is read as given: the single file, or the shards its index names.
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(read_safetensors(single)[name], value * 2)
        np.testing.assert_array_equal(read_safetensors(index)[name], value)
    assert read_safetensors_shapes(index) == {"a": (2, 3), "b": (2,), "c": (4,)}
    os.remove(single)  # the stale file deleted, as the message says: the folder reads its shards
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(read_safetensors(folder)[name], value)


def test_a_hub_revision_with_both_reads_the_single_file_as_transformers_does(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from tfvit.convert.hub import hub_checkpoint

    folder = _both_checkpoints(tmp_path / "snapshot")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(folder))
    # The cache is not the user's folder to clean: the revision's files are read, the single one first.
    path = hub_checkpoint("hf-hub:acme/both")
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(read_safetensors(path)[name], value * 2)


def test_keras_files_are_refused_with_the_keras_call_that_reads_them(tmp_path):
    import keras

    import tfvit

    model = tfvit.create_model("vit_mnist_patch4_28", depth=1, num_classes=3)
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "model.keras")
    model.save_weights(tmp_path / "model.weights.h5")
    (tmp_path / "renamed.safetensors").write_bytes((tmp_path / "model.weights.h5").read_bytes())
    (tmp_path / "model.h5").write_bytes((tmp_path / "model.weights.h5").read_bytes())
    for file, what, call in [("model.keras", "a Keras model file", "model = keras.models.load_model({path!r})"),
                             ("model.weights.h5", "a Keras weights file", "model.load_weights({path!r})"),
                             ("renamed.safetensors", "a Keras weights file", "model.load_weights({path!r})"),
                             ("model.h5", "a Keras weights file", "model = keras.models.load_model({path!r})")]:
        path = str(tmp_path / file)
        with pytest.raises(ValueError) as refused:
            tfvit.create_model("vit_mnist_patch4_28", depth=1, num_classes=3, pretrained=path)
        message = str(refused.value)
        assert message.startswith(f"{path!r} is {what}") and call.format(path=path) in message, message
        assert "torch" not in message and "interrupted download" not in message
    # The calls it gives read the files exactly.
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, rtol=0, atol=1e-6)
    fresh = tfvit.create_model("vit_mnist_patch4_28", depth=1, num_classes=3)
    assert not np.allclose(keras.ops.convert_to_numpy(fresh(x)), expected)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(x)), expected, rtol=0, atol=1e-6)
