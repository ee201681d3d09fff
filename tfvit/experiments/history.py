"""A run's history.csv (Keras's CSVLogger, one row per epoch): read what is whole, repair what is torn.

A kill while a row is written leaves half a row; a resumed process then appends after it. A row counts
only when it has every column of the header and each value is a number (or empty), and a repeated
header is skipped. Before a process trains, ``repair_history`` rewrites the file with the whole rows of
the epochs its resume state holds, so the epochs trained again are written once and the file stays
valid CSV.
"""

import csv
import math
import os
import tempfile

HISTORY_FILE = "history.csv"


def _number(text):
    return math.nan if text in ("", "NA") else float(text)  # CSVLogger writes NA for a missing value


def _whole_rows(path):
    """(header, {epoch: raw row}) of the file's whole rows; a later row of an epoch wins (it was trained again)."""
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError, csv.Error):
        return None, {}
    if not lines or "epoch" not in lines[0]:
        return None, {}
    header, rows = lines[0], {}
    at = header.index("epoch")
    for line in lines[1:]:
        if len(line) != len(header) or line == header:
            continue
        try:
            values = [_number(v) for v in line]
        except ValueError:
            continue
        if values[at] != values[at] or values[at] != int(values[at]):
            continue
        rows[int(values[at])] = line
    return header, rows


def read_history(run_dir):
    """history.csv as {column: [values per epoch]}, epochs in order, from its whole rows only."""
    header, rows = _whole_rows(os.path.join(run_dir, HISTORY_FILE))
    columns = {}
    for epoch in sorted(rows):
        for key, value in zip(header, rows[epoch]):
            columns.setdefault(key, []).append(_number(value))
    return columns


def repair_history(run_dir, epochs_kept):
    """Rewrite history.csv with the whole rows of epochs 0..``epochs_kept - 1`` (the ones a resume state
    holds), atomically; remove it when none is left (the next epoch writes a new header)."""
    path = os.path.join(run_dir, HISTORY_FILE)
    if not os.path.exists(path):
        return
    header, rows = _whole_rows(path)
    kept = [rows[e] for e in sorted(rows) if e < epochs_kept]
    if header is None or not kept:
        os.remove(path)
        return
    descriptor, tmp = tempfile.mkstemp(prefix=".history.", suffix=".csv.partial", dir=run_dir)
    with os.fdopen(descriptor, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)
    os.replace(tmp, path)
