"""Shared by the benchmarks: peak resident memory while a piece of code runs, and interleaved
measurements in fresh child processes (so each configuration's peak memory is its own, and a noisy
machine slows all configurations alike)."""

import json
import os
import statistics
import subprocess
import sys
import threading
import time


def resident_mb():
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class PeakResidentMemory:
    """Context manager: ``peak_mb`` is the largest resident set size sampled every 5 ms inside the
    block, ``added_mb`` that peak minus ``baseline_mb`` (default: the resident size on entry)."""

    def __init__(self, baseline_mb=None):
        self.baseline_mb = baseline_mb

    def __enter__(self):
        import psutil

        self._process = psutil.Process()
        self.peak_mb = self._process.memory_info().rss / 2**20
        if self.baseline_mb is None:
            self.baseline_mb = self.peak_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)
        self.added_mb = self.peak_mb - self.baseline_mb


def interleaved(commands, rounds, progress=True):
    """Run each child command once per round, round by round (A B C ... A B C); each prints one JSON
    line last. Returns {key: [parsed results]} for the ``(key, command)`` pairs given; a third item,
    ``(key, command, env)``, adds those environment variables to that child's."""
    results = {key: [] for key, *_ in commands}
    for round_ in range(rounds):
        for key, command, *extra in commands:
            env = {**os.environ, **extra[0]} if extra else None
            out = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env)
            if out.returncode:
                raise RuntimeError(f"{key}: child failed:\n{out.stderr[-2000:]}")
            results[key].append(json.loads(out.stdout.strip().splitlines()[-1]))
            if progress:
                print(f"round {round_ + 1}/{rounds}: {key} done", file=sys.stderr, flush=True)
    return results


def median(runs, field):
    return statistics.median(r[field] for r in runs)
