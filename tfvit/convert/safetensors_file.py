"""Read checkpoint tensors from safetensors files, and only from them.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON naming each tensor's
dtype, shape and byte range, then the raw data: reading it runs no code. PyTorch's ``.bin`` / ``.pt``
/ ``.pth`` / ``.ckpt`` files are pickles (inside a zip since torch 1.6), and unpickling a file runs
whatever it says, so those are refused before a byte of them is interpreted, with the two lines that
convert them. No torch is needed: tensors come back as numpy arrays, read by the ``safetensors``
package's ``safe_open``.
"""

import json
import os

import numpy as np

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"

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


def _refuse(path, what):
    raise ValueError(
        f"refusing to read {path!r}: it is {what}. Loading a pickle can run arbitrary code, so tfvit only reads "
        f"safetensors files.\n" + CONVERT_HINT.format(path=path)
    )


def resolve_checkpoint(path):
    """The safetensors file(s) ``path`` names: a file, or a directory written by ``save_pretrained``.

    Returns a list of file paths (several for a sharded checkpoint). Raises FileNotFoundError for a
    missing path and ValueError for anything that is not safetensors.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        index = os.path.join(path, SHARD_INDEX_NAME)
        if os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
            return [os.path.join(path, WEIGHTS_NAME)]
        if os.path.isfile(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [check_safetensors_file(os.path.join(path, shard)) for shard in shards]
        present = sorted(os.listdir(path))
        pickles = [name for name in present if name.endswith(PICKLE_SUFFIXES)]
        if pickles:
            _refuse(os.path.join(path, pickles[0]), "a PyTorch pickle checkpoint (by its extension)")
        raise FileNotFoundError(
            f"no {WEIGHTS_NAME} (or {SHARD_INDEX_NAME}) in the directory {path!r}; it holds {present[:10]}."
        )
    return [check_safetensors_file(path)]


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
    what = _pickle_or_zip(head)
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
