"""Fault injection on the resume state: real kills at chosen moments, and damaged files.

A process of tests/training/resume_child.py is killed with SIGKILL ten times, at moments drawn with a fixed
seed: some during the steps, some inside an end-of-epoch save (between its ``save`` and ``saved`` lines).
Each time the same command is run again; the run that finally completes must end with weights bit-identical
to an uninterrupted run's. (The uninterrupted run and the last, completing one run in this process: the
same code, without two more TensorFlow start-ups.)

The child waits for the test after each line it prints, so how far a killed run gets depends on the drawn
moment alone, not on the machine's speed: at most one line past it. That bounds the epochs the ten kills can
complete, and the run is made longer than that bound, so every kill lands before the end.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.training import resume_child
from tfvit.training import resume_state

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10


def kill_plan(seed=2026):
    """The ten kills: (moment, occurrence, delay), alternating between steps and saves."""
    rng = random.Random(seed)
    plan = []
    for kill in range(KILLS):
        moment = "save" if kill % 2 else "step"
        occurrence = rng.randint(1, 2) if moment == "save" else rng.randint(1, 5)
        plan.append((moment, occurrence, rng.uniform(0.0, 0.03 if moment == "save" else 0.2)))
    return plan


def epochs_completed_at_most(moment, occurrence):
    """The epochs a run killed at this moment can have saved: a kill in the j-th save may come after it
    finished (j); a kill after the k-th step may follow a save per full epoch before it (the save after step
    k itself is only announced: the child waits before writing it)."""
    return occurrence if moment == "save" else occurrence // resume_child.STEPS


def command(directory, epochs):
    return [sys.executable, "-m", "tests.training.resume_child", str(directory), str(epochs), "--wait"]


def final_weights(directory):
    with np.load(directory / "final.npz") as stored:
        return [stored[k] for k in sorted(stored.files, key=lambda k: int(k.split("_")[1]))]


def run_until(directory, epochs, moment, occurrence, delay, timeout=300):
    """Start the child, let it go on line by line, and SIGKILL it ``delay`` seconds after it was let go on from
    its ``occurrence``-th ``moment`` line ("step" or "save"); returns what the child had printed, or None if it
    finished first."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command(directory, epochs), cwd=ROOT, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen, deadline = [], time.time() + timeout
    for line in process.stdout:
        seen.append(line.strip())
        if seen[-1] == "done" or time.time() > deadline:
            break
        process.stdin.write("\n")  # go on
        process.stdin.flush()
        if seen.count(moment) == occurrence:
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    return None if "done" in seen else seen


def test_ten_kills_during_steps_and_saves_end_bit_identical_to_an_uninterrupted_run(tmp_path):
    plan = kill_plan()
    epochs = sum(epochs_completed_at_most(moment, occurrence) for moment, occurrence, _ in plan) + 2
    whole = tmp_path / "whole"
    whole.mkdir()
    resume_child.main(str(whole), epochs)
    killed = tmp_path / "killed"
    killed.mkdir()
    partials = set()
    for kill, (moment, occurrence, delay) in enumerate(plan):
        seen = run_until(killed, epochs, moment, occurrence, delay)
        assert seen is not None, f"kill {kill + 1}: the run finished before it was killed"
        assert seen.count(moment) == occurrence, f"kill {kill + 1}: the run stopped before its moment: {seen}"
        # A kill inside a save leaves its partial folder (the next save clears it); it is never read as a state.
        names = os.listdir(killed / "resume") if (killed / "resume").exists() else []
        partials |= {name for name in names if name.endswith(".partial")}
        # What a kill leaves is never taken for a state: every folder named epoch-NNNN verifies.
        for _, folder in resume_state.state_folders(killed / "resume"):
            resume_state.verify(folder)
    assert len(partials) >= 3  # kills landed inside saves: partial states were being written
    resume_child.main(str(killed), epochs)
    for a, b in zip(final_weights(whole), final_weights(killed), strict=True):
        np.testing.assert_array_equal(a, b)
