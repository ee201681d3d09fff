"""Strict JSON files: never ``NaN`` or ``Infinity``, never half a file.

Python's ``json`` writes non-finite floats as the bare words ``NaN`` and ``Infinity``, which strict JSON
readers (JavaScript's ``JSON.parse``, jq, most languages' parsers) refuse. ``write_json`` writes them as
``null`` instead, with ``allow_nan=False`` as the guarantee, and replaces the file atomically: a reader sees
the old file or the new one. Which values were not finite is for the caller to record (``non_finite_keys``
names them): the writer does not know what they mean.
"""

import json
import math
import os
import secrets

import numpy as np

__all__ = ["finite_json", "non_finite_keys", "write_json"]


def _is_non_finite(value):
    return isinstance(value, (float, np.floating)) and not math.isfinite(value)


def finite_json(obj):
    """A copy of ``obj`` that ``json`` can write strictly: non-finite floats become None, numpy scalars and
    arrays Python numbers and lists, tuples lists; dicts and lists are copied, other values kept."""
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if _is_non_finite(obj):
        return None
    return obj


def non_finite_keys(obj, prefix=""):
    """The keys under which ``obj`` holds a non-finite float, as dotted paths (``"test_loss"``,
    ``"history.loss"``; list positions are not part of a path), each once, in order of appearance."""
    found = []

    def visit(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, (list, tuple, np.ndarray)):
            for item in (value.tolist() if isinstance(value, np.ndarray) else value):
                visit(item, path)
        elif _is_non_finite(value) and (path or "<value>") not in found:
            found.append(path or "<value>")

    visit(obj, prefix)
    return found


def write_json(path, obj, indent=2, sort_keys=False):
    """Write ``obj`` to ``path`` as strict JSON (non-finite floats as ``null``: ``finite_json``), atomically:
    into a uniquely named temporary file in the same folder, then ``os.replace``. Returns ``path``."""
    path = os.fspath(path)
    text = json.dumps(finite_json(obj), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 gives the file the permissions the umask allows, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
