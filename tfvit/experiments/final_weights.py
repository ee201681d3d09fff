"""The final weights of a run: written whole or not at all, read back before anything relies on them, and named
by a checksum that the run's result.json records.

A finished run's folder keeps ``model.weights.h5`` and ``result.json`` and deletes its resume state, until then
the only copy of the trained weights. So the weights are written into a temporary file, read back and compared
with the model's variables, then renamed into place (a reader sees the old file or the new one, never half of
one); the result records the file's SHA-256, and a result whose weights file is missing or differs is not taken
as finished (``weights_match``). A write that fails (a full disk) raises ``FinalWeightsNotSaved``, which says
that the trained state is kept and how to finish.
"""

import hashlib
import os
import secrets

import numpy as np

from tfvit.errors import UserError
from tfvit.training.distribution import numpy_value
from tfvit.training.resume_state import file_sha256, fsync_folder

WEIGHTS_FILE = "model.weights.h5"


class FinalWeightsNotSaved(UserError):
    """The final weights (or the result) of a trained run could not be written; the resume state is kept."""


_DIGESTS = {}  # (path, size, mtime_ns) -> sha256: run_all asks about every run of a study before each run


def weights_match(path, sha256):
    """Whether the file at ``path`` exists and has the SHA-256 ``sha256``."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        try:
            _DIGESTS[key] = file_sha256(path)
        except OSError:
            return False
    return _DIGESTS[key] == sha256


def _file_arrays(path):
    """The arrays of a Keras ``.weights.h5`` file (the datasets under its ``layers`` group), in no particular order."""
    import h5py

    arrays = []
    with h5py.File(path, "r") as stored:
        stored.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _fingerprint(array):
    array = np.ascontiguousarray(array)
    return str(array.dtype), array.shape, hashlib.sha256(array.tobytes()).hexdigest()


def _verify(model, path):
    """Raise OSError unless the file at ``path`` holds exactly the values of ``model``'s weights (compared as a
    multiset of dtype, shape and bytes: Keras's file orders them by layer paths, not as ``model.weights``)."""
    stored = sorted(_fingerprint(a) for a in _file_arrays(path))
    expected = sorted(_fingerprint(numpy_value(v)) for v in model.weights)
    if stored != expected:
        raise OSError(f"{path} does not hold the model's weights when read back ({len(stored)} arrays read, "
                      f"{len(expected)} expected, {sum(a != b for a, b in zip(stored, expected))} differ)")


def write_final_weights(model, folder, label=None):
    """Write ``model``'s weights, without its optimizer's, to ``folder/model.weights.h5`` atomically and verified;
    returns the file's SHA-256. ``label`` names the run in the error of a failed write (``FinalWeightsNotSaved``)."""
    from keras.src.saving import saving_lib  # Keras's own writer; its public save_weights has no way to skip

    path = os.path.join(folder, WEIGHTS_FILE)
    tmp = os.path.join(folder, f".{os.getpid()}.{secrets.token_hex(4)}.partial.weights.h5")  # Keras needs the suffix
    optimizer = getattr(model, "optimizer", None)
    try:
        saving_lib.save_weights_only(model, tmp, objects_to_skip=[optimizer] if optimizer is not None else None)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _verify(model, tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
        fsync_folder(folder)
    except OSError as error:
        raise FinalWeightsNotSaved(
            f"cannot write the final weights of {label or folder} to {path}: {error.strerror or error}. The trained "
            f"state is kept in {os.path.join(folder, 'resume')}; free space (or make the folder writable), then run "
            f"the same command to finish the run without training it again."
        ) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return digest
