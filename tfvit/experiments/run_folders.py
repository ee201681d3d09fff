"""Where a run lives under a study's log folder: ``<arm>/<short config>``, e.g. ``accumulation/b128-acc4-lr1e-3-e10``.

TensorBoard names a run by its folder, so the folder is what a user reads in its run list: the arm the
tables compare (the configuration's ``group``, or its model when it has none) and the settings that
usually tell a study's runs apart (batch, accumulation, rate, epochs). Everything else that
determines the run (the full ``RunConfig`` and its digest ``RunConfig.name``) is written into the
folder's ``config.json`` and into the HParams dashboard.

Two configurations can share those readable parts (another seed, another ``--limit-train``). The first one
started takes the plain name, the next ones ``-2``, ``-3``, ... in the order they were first started: a
configuration's folder is the first candidate whose ``config.json`` holds its identity, so the same
configuration finds its folder again (to resume, or to read its result) and a different one never
shares it.
"""

import json
import os
import re
import time

from tfvit.experiments.json_output import write_json

CONFIG_FILE = "config.json"


def arm_folder(config):
    """The configuration's ``group`` (or model) as a folder name: lower case, runs of characters other than
    letters, digits, ``.``, ``-`` and ``_`` turned into one ``_`` ("ViT (2L-2H-128)" -> "vit_2l-2h-128")."""
    label = config.group or config.model
    return re.sub(r"[^a-z0-9._-]+", "_", label.lower()).strip("_.") or "run"


def short_config(config):
    """The settings that usually tell a study's runs apart: ``b<batch>-acc<accum>-lr<rate>-e<epochs>``."""
    mantissa, exponent = f"{config.learning_rate:.2e}".split("e")
    lr = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 1e-3, 2.5e-4: three significant digits at most
    return f"b{config.batch_size}-acc{config.accum}-lr{lr}-e{config.epochs}"


# How long a folder without config.json may be another process's claim in progress (made, not yet written).
CLAIM_SECONDS = 5.0


def _saved_identity(folder, report=None):
    """The identity in ``folder``'s config.json; None when it cannot be read (told to ``report``)."""
    path = os.path.join(folder, CONFIG_FILE)
    deadline = time.time() + CLAIM_SECONDS
    while not os.path.exists(path) and time.time() < deadline and time.time() - os.path.getmtime(folder) < CLAIM_SECONDS:
        time.sleep(0.05)
    try:
        with open(path) as f:
            return json.load(f)["identity"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        if report:
            report(f"{path} cannot be read ({type(error).__name__}); the run takes another folder")
        return None


def run_folder(config, logdir, create=False, report=None):
    """The folder of ``config`` under ``logdir`` (see the module's docstring), as a path.

    With ``create``, a folder that does not exist yet is made and given the configuration's
    ``config.json`` (written whole, then renamed), which claims the name for it; a folder whose
    config.json cannot be read is passed over and told to ``report(message)``."""
    base = os.path.join(logdir, arm_folder(config), short_config(config))
    identity = config.identity()
    for number in range(1, 10_000):
        folder = base if number == 1 else f"{base}-{number}"
        if not os.path.exists(folder):
            if create:
                try:
                    os.makedirs(folder)
                except FileExistsError:  # another process claimed it a moment ago: read its claim
                    if _saved_identity(folder, report) == identity:
                        return folder
                    continue
                write_json(os.path.join(folder, CONFIG_FILE), {"run_id": config.name, "identity": identity},
                           sort_keys=True)
            return folder
        if _saved_identity(folder, report if create else None) == identity:
            return folder
    raise RuntimeError(f"more than 9999 configurations share the folder name {base}; use another --logdir.")


def run_label(config, logdir):
    """How messages name the run: its folder relative to ``logdir`` (``accumulation/b128-acc4-lr1e-3-e10``)."""
    return os.path.relpath(run_folder(config, logdir), logdir)
