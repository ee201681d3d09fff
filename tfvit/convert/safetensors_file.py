"""Read checkpoint tensors from safetensors files, and only from them.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON naming each tensor's
dtype, shape and byte range, then the raw data: reading it runs no code. PyTorch's ``.bin`` / ``.pt``
/ ``.pth`` / ``.ckpt`` files are pickles (inside a zip since torch 1.6), and unpickling a file runs
whatever it says, so those are refused before a byte of them is interpreted, with the two lines that
convert them. Keras's own files (``.keras``, ``.weights.h5``) are refused with the Keras call that reads
them. No torch is needed: tensors come back as numpy arrays, read by the ``safetensors`` package's
``safe_open``.
"""

import io
import json
import os
import pickletools
import re
import struct
import time

import numpy as np

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"
SHARD_INDEX_SUFFIX = ".safetensors.index.json"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

CONVERT_HINT = (
    "Convert it once, where torch is installed and you trust the file:\n"
    "    import torch, safetensors.torch\n"
    "    state_dict = torch.load(\"{path}\", map_location=\"cpu\", weights_only=True)\n"
    "    state_dict = state_dict.get(\"model\", state_dict)  # training checkpoints wrap the weights\n"
    "    safetensors.torch.save_file({{k: v.contiguous() for k, v in state_dict.items()}}, \"model.safetensors\")\n"
    "or, for a Hugging Face model directory:\n"
    "    from transformers import AutoModelForImageClassification\n"
    "    AutoModelForImageClassification.from_pretrained(\"{path}\").save_pretrained(\"out_dir\", "
    "safe_serialization=True)"
)


def _pickle_or_zip(head):
    """What the first bytes of a file say it is, when it is a pickle or a zip archive (else None)."""
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (the format torch.save writes)"
    # Pickle protocols 2-5 open with the PROTO opcode 0x80 and the protocol number; torch's legacy
    # (pre-zip) format starts with such a pickle too.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]})"
    return None


def _plausible_safetensors(head, size):
    """Whether the first bytes are a safetensors header start: a length that fits the file, then ``{``."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 8 + length <= size and head[8:9] == b"{"


def _headerless_pickle(path, size):
    """``"a Python pickle (protocol 0)"`` (or 1) when the file is a pickle of the protocols that have no
    PROTO opcode to recognise it by, else None. Its opcodes are only parsed (``pickletools.genops``), never
    run: a pickle ends with STOP (``.``), and a run of valid opcodes is no accident in other bytes."""
    if size < 2:
        return None
    with open(path, "rb") as f:
        data = f.read(1 << 20)
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b".":
            return None
    protocol, count = 0, 0
    try:
        for opcode, _, _ in pickletools.genops(io.BytesIO(data)):
            protocol, count = max(protocol, opcode.proto), count + 1
            if opcode.name == "STOP" or count >= 32:
                break
        else:
            return None  # the data ended without STOP: not a whole pickle
    except ValueError:  # an unknown opcode or a malformed argument
        if count < 8:
            return None
    if protocol > 1:
        return None  # protocols 2-5 begin with PROTO, recognised by _pickle_or_zip
    return f"a Python pickle (protocol {protocol})"


def _keras_file(path, head):
    """Why ``path`` is one of Keras's own files and the Keras call that reads it, else None. Such a file is not a
    checkpoint to convert (tfvit converts transformers' and timm's safetensors): Keras reads it exactly."""
    if path.lower().endswith(".keras"):
        return (f"{path!r} is a Keras model file (.keras: the architecture and its weights, as model.save writes it), "
                f"not a transformers or timm checkpoint to convert. Keras loads it whole:\n"
                f"    import keras, tfvit.models, tfvit.training  # importing them registers tfvit's classes\n"
                f"    model = keras.models.load_model({path!r})")
    if head.startswith(HDF5_SIGNATURE):
        legacy = "" if path.lower().endswith(".weights.h5") else (
            f"\n(or, for a whole model saved by model.save to .h5: model = keras.models.load_model({path!r}))")
        return (f"{path!r} is a Keras weights file (HDF5, as model.save_weights writes it), not a transformers or "
                f"timm checkpoint to convert. Build the model it was saved from, with the same arguments, and let "
                f"Keras load it:\n"
                f"    model = tfvit.create_model(name, ...)  # the name and arguments of the saved model\n"
                f"    model.load_weights({path!r}){legacy}")
    return None


def _refuse(path, what):
    if path.lower().endswith(".safetensors"):
        what += ", not a safetensors file whatever its name says"
    raise ValueError(
        f"refusing to read {path!r}: it is {what}. Loading a pickle can run arbitrary code, so tfvit only reads "
        f"safetensors files.\n" + CONVERT_HINT.format(path=path)
    )


def resolve_checkpoint(path):
    """The safetensors file(s) ``path`` names: a file, a shard index (``*.safetensors.index.json``) or a directory
    written by ``save_pretrained``.

    Returns a list of file paths (several for a sharded checkpoint). Raises FileNotFoundError for a
    missing path and ValueError for anything that is not safetensors, and for a directory holding both
    ``model.safetensors`` and a shard index (which of the two is current cannot be told).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        single, index = os.path.join(path, WEIGHTS_NAME), os.path.join(path, SHARD_INDEX_NAME)
        if os.path.isfile(single) and os.path.isfile(index):
            raise ValueError(_two_checkpoints(path, single, index))
        if os.path.isfile(single):
            return [check_safetensors_file(single)]
        if os.path.isfile(index):
            return _shards(index)
        present = sorted(os.listdir(path))
        pickles = [name for name in present if name.endswith(PICKLE_SUFFIXES)]
        if pickles:
            _refuse(os.path.join(path, pickles[0]), "a PyTorch pickle checkpoint (by its extension)")
        raise FileNotFoundError(
            f"no {WEIGHTS_NAME} (or {SHARD_INDEX_NAME}) in the directory {path!r}; it holds {present[:10]}."
        )
    if path.endswith(SHARD_INDEX_SUFFIX) and os.path.isfile(path):
        return _shards(path)
    return [check_safetensors_file(path)]


def _two_checkpoints(folder, single, index):
    """The refusal of a folder holding a single-file and a sharded checkpoint: one is left over from an earlier save
    (transformers' ``save_pretrained`` keeps ``model.safetensors`` when it writes shards, and the index when it
    writes one file), and transformers' ``from_pretrained`` would read ``model.safetensors``, stale or not."""
    times = {name: os.path.getmtime(file) for name, file in ((WEIGHTS_NAME, single), (SHARD_INDEX_NAME, index))}
    newer = "" if len(set(times.values())) == 1 else f"; {max(times, key=times.get)} is the newer"
    when = {name: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) for name, t in times.items()}
    return (
        f"the folder {folder!r} holds two checkpoints: {WEIGHTS_NAME} (modified {when[WEIGHTS_NAME]}) and the shard "
        f"index {SHARD_INDEX_NAME} (modified {when[SHARD_INDEX_NAME]}){newer}. One is left over from an earlier save "
        f"and their weights may differ, so neither is read. Delete the stale one (a stale index with its "
        f"model-*-of-*.safetensors shards), or pass the file to read: {single!r} or {index!r}."
    )


def _shards(index):
    folder = os.path.dirname(index)
    return [check_safetensors_file(os.path.join(folder, shard)) for shard in _shard_files(index)]


def _shard_files(index):
    """The shard file names of the shard index ``index``, each once, sorted. Refuses an index that is not one,
    and entries that point outside the index's folder (an absolute path, or ``..``)."""
    try:
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{index!r} is not a readable shard index ({type(error).__name__}: {error}): expected a "
                         f"JSON object whose \"weight_map\" maps tensor names to shard files.") from None
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) and s for s in weight_map.values()):
        raise ValueError(f"{index!r}: its \"weight_map\" must map tensor names to shard file names.")
    outside = [(name, shard) for name, shard in weight_map.items()
               if os.path.isabs(shard) or shard.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", shard)]
    if outside:
        name, shard = outside[0]
        how = "an absolute path" if os.path.isabs(shard) or shard.startswith(("/", "\\")) else "a path with '..'"
        more = f" ({len(outside) - 1} more entries do too)" if len(outside) > 1 else ""
        raise ValueError(
            f"refusing the shard index {index!r}: its weight_map entry {name!r} -> {shard!r} is {how}, outside the "
            f"checkpoint's folder{more}. A shard index names shard files in its own folder; fix the index, or put "
            f"the shards beside it."
        )
    return sorted(set(weight_map.values()))


def check_safetensors_file(path):
    """Return ``path`` if it exists and looks like safetensors; refuse pickles and zips by name or content."""
    path = os.fspath(path)
    if not os.path.exists(path):
        folder = os.path.dirname(path) or "."
        nearby = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")) if os.path.isdir(folder) else []
        hint = f" Safetensors files in {folder!r}: {nearby[:5]}." if nearby else ""
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist.{hint}")
    with open(path, "rb") as f:
        head = f.read(16)
    keras_file = _keras_file(path, head)
    if keras_file is not None:
        raise ValueError(keras_file)
    what = _pickle_or_zip(head)
    size = os.path.getsize(path)
    if what is None and not _plausible_safetensors(head, size):
        what = _headerless_pickle(path, size)
    if what is not None:
        _refuse(path, what)
    if path.lower().endswith(PICKLE_SUFFIXES):
        _refuse(path, f"a PyTorch checkpoint by its extension ({os.path.splitext(path)[1]})")
    return path


def _open(path):
    # numpy has no bfloat16. ml_dtypes (a dependency of Keras, TensorFlow and JAX) registers one under that
    # name, and safe_open(framework="np") then returns BF16 tensors as ml_dtypes arrays (without it, it
    # raises TypeError); read_safetensors widens them to float32, which holds every bfloat16 exactly.
    import ml_dtypes  # noqa: F401
    from safetensors import SafetensorError, safe_open  # imported here: only the readers need the package

    try:
        return safe_open(path, framework="np")
    except (SafetensorError, OSError) as error:
        size = os.path.getsize(path)
        raise ValueError(
            f"{path!r} ({size} bytes) is not a readable safetensors file: {error}. A file cut short by an "
            f"interrupted download or copy reads like this; fetch or convert it again."
        ) from None


def read_safetensors(path):
    """Every tensor of a safetensors checkpoint as ``{name: numpy array}``.

    ``path``: a ``.safetensors`` file, or a directory holding ``model.safetensors`` (or a sharded
    ``model.safetensors.index.json``), as ``save_pretrained`` writes it. bfloat16 tensors are returned
    as float32. Pickle-based checkpoints (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, or any file
    whose bytes are a pickle or a zip) raise ValueError without being unpickled.
    """
    from safetensors import SafetensorError

    tensors = {}
    for file in resolve_checkpoint(path):
        with _open(file) as f:
            for name in f.keys():
                try:
                    value = f.get_tensor(name)
                except (SafetensorError, OSError) as error:
                    raise ValueError(f"{file!r}: cannot read tensor {name!r}: {error}. Is the file complete?") from None
                except (TypeError, AttributeError) as error:  # safe_open's numpy has no type for the dtype (float8)
                    raise ValueError(f"{file!r}: cannot read tensor {name!r} of dtype "
                                     f"{f.get_slice(name).get_dtype()} as a numpy array: {error}.") from None
                tensors[name] = value.astype(np.float32) if value.dtype.name == "bfloat16" else value
    return tensors


def read_safetensors_shapes(path):
    """``{name: shape}`` of a checkpoint, from its header only (no tensor data is read)."""
    shapes = {}
    for file in resolve_checkpoint(path):
        with _open(file) as f:
            for name in f.keys():
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes
