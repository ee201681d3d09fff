"""A run's resume state on disk: one folder per finished epoch, written whole and then renamed into place.

``<directory>/epoch-0004/`` holds ``variables.npz`` (the model's and the optimizer's variables, in order)
and ``state.json`` (the epoch count, callback counters, the epochs at which a process began training,
and the size and SHA-256 of ``variables.npz``). A state is written into a temporary folder with a
unique name, flushed to the disk, and renamed to ``epoch-NNNN`` in one step, so a kill at any moment
leaves either the new state complete or no trace of it; the previous epoch's state is kept until the
next one is complete, so there is always one to fall back on.

Reading takes the newest state that verifies (state.json parses and names an epoch, variables.npz is
there with its recorded size and checksum). A damaged newest state is reported and the one before it
is used; without any good state the run starts from the beginning. Either way the run then ends as
an uninterrupted run would, because the data of epoch e depend only on the seed and e.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

STATE_FILE = "state.json"
VARIABLES_FILE = "variables.npz"
KEEP = 2  # the newest complete state and the one before it
_NAME = re.compile(r"^epoch-(\d+)$")


class DamagedState(Exception):
    """A saved state that does not verify; the message says which file and why."""


def file_sha256(path):
    """The SHA-256 of the file at ``path``, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_folder(folder):
    """Make a rename in ``folder`` durable (where the platform can open folders)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders: the rename is still atomic, only less durable
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def state_folders(directory):
    """(epoch, path) of every ``epoch-NNNN`` folder in ``directory``, newest first."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [(int(m.group(1)), os.path.join(directory, name)) for name in names if (m := _NAME.match(name))]
    return sorted(found, reverse=True)


def verify(folder):
    """The state dict of the state in ``folder``; raises DamagedState naming the file and the fault."""
    state_path = os.path.join(folder, STATE_FILE)
    try:
        with open(state_path) as f:
            state = json.load(f)
        epoch, record = int(state["epoch"]), state["variables"]
        size, checksum = int(record["bytes"]), str(record["sha256"])
    except FileNotFoundError:
        raise DamagedState(f"{state_path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedState(f"{state_path} cannot be read ({type(error).__name__}: {error})") from None
    variables_path = os.path.join(folder, VARIABLES_FILE)
    if not os.path.exists(variables_path):
        raise DamagedState(f"{variables_path} is missing")
    if os.path.getsize(variables_path) != size:
        raise DamagedState(f"{variables_path} has {os.path.getsize(variables_path)} bytes, not the {size} written")
    if file_sha256(variables_path) != checksum:
        raise DamagedState(f"{variables_path} does not match the checksum written with it")
    if _NAME.match(os.path.basename(folder)) and int(_NAME.match(os.path.basename(folder)).group(1)) != epoch:
        raise DamagedState(f"{state_path} says epoch {epoch}, its folder another")
    return state


def latest_state(directory, report=None):
    """``(epoch, folder, state)`` of the newest state in ``directory`` that verifies, ``(0, None, None)``
    without one. ``report(message)`` (default: print to stderr) is told about each damaged state passed
    over and what is used instead."""
    report = report or (lambda message: print(message, file=sys.stderr, flush=True))
    damaged = []
    for epoch, folder in state_folders(directory):
        try:
            state = verify(folder)
        except DamagedState as fault:
            damaged.append(str(fault))
            continue
        for fault in damaged:
            report(f"resume state damaged: {fault}; continuing from the state of epoch {epoch} instead")
        return epoch, folder, state
    for fault in damaged:
        report(f"resume state damaged: {fault}; no earlier state is complete, so the run starts from epoch 1")
    return 0, None, None


def read_variables(folder):
    """The arrays of ``folder``'s variables.npz, in the order they were saved."""
    with np.load(os.path.join(folder, VARIABLES_FILE)) as stored:
        return [stored[f"v{i}"] for i in range(len(stored.files))]


def _remove(folder):
    """Delete a state folder so that no half-deleted ``epoch-NNNN`` is ever seen: renamed to a partial name
    first (one step), then removed; a kill in between leaves a partial folder, which the next save clears."""
    doomed = f"{folder}.{os.getpid()}.removed.partial"
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def write_state(directory, epoch, arrays, state):
    """Save ``arrays`` and ``state`` (a JSON-ready dict, given ``epoch`` and the checksum here) as
    ``directory/epoch-NNNN`` atomically; then drop all but the newest ``KEEP`` states and any partial
    one left by a kill. Returns the folder."""
    os.makedirs(directory, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".epoch-{epoch:04d}.", suffix=".partial", dir=directory)
    try:
        variables_path = os.path.join(partial, VARIABLES_FILE)
        with open(variables_path, "wb") as f:
            np.savez(f, **{f"v{i}": a for i, a in enumerate(arrays)})
            f.flush()
            os.fsync(f.fileno())
        record = {"bytes": os.path.getsize(variables_path), "sha256": file_sha256(variables_path)}
        with open(os.path.join(partial, STATE_FILE), "w") as f:
            json.dump(dict(state, epoch=epoch, variables=record), f)
            f.flush()
            os.fsync(f.fileno())
        final = os.path.join(directory, f"epoch-{epoch:04d}")
        if os.path.exists(final):  # an epoch trained again after its state was found damaged
            _remove(final)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_folder(directory)
    # Newer folders are states found damaged (this epoch was trained again after them); then all but KEEP.
    folders = [(e, path) for e, path in state_folders(directory) if e <= epoch]
    stale = [path for e, path in state_folders(directory) if e > epoch] + [path for _, path in folders[KEEP:]]
    for old in stale:
        _remove(old)
    for name in os.listdir(directory):
        if name.endswith(".partial"):  # left by a process killed while saving (the run is locked to one process)
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return final
