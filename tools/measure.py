"""Shared by the benchmarks: interleaved measurements in fresh child processes, so each
configuration's peak memory is its own (measured in the child with ``tfvit.training.memory``'s
``PeakResidentMemory``) and a noisy machine slows all configurations alike. Importing it loads no
TensorFlow, so a parent that only plans and summarizes stays light."""

import json
import os
import statistics
import subprocess
import sys

# The repository root: the children run there, as ``python -m tools.NAME``, whatever the caller's cwd.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_command(module, *arguments):
    """A child command for ``interleaved``: ``python -m module arguments...`` (arguments as strings)."""
    return ["-m", module, *[str(a) for a in arguments]]


def interleaved(commands, rounds, progress=True):
    """Run each child command once per round, round by round (A B C ... A B C); each prints one JSON
    line last. Returns {key: [parsed results]} for the ``(key, command)`` pairs given (``command``:
    the arguments after ``python``, e.g. ``module_command("tools.x", ...)``, run in the repository
    root); a third item, ``(key, command, env)``, adds those environment variables to that child's."""
    results = {key: [] for key, *_ in commands}
    for round_ in range(rounds):
        for key, command, *extra in commands:
            env = {**os.environ, **extra[0]} if extra else None
            out = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, cwd=ROOT)
            if out.returncode:
                raise RuntimeError(f"{key}: child failed:\n{out.stderr[-2000:]}")
            results[key].append(json.loads(out.stdout.strip().splitlines()[-1]))
            if progress:
                print(f"round {round_ + 1}/{rounds}: {key} done", file=sys.stderr, flush=True)
    return results


def median(runs, field):
    return statistics.median(r[field] for r in runs)
