"""Peak resident memory of this process: the largest resident set size (RSS) between a reset and a read.

Two ways to get it:

- ``"kernel"`` (Linux >= 4.0): the kernel keeps the resident set's exact high-water mark (``VmHWM``
  in ``/proc/self/status``), updated at every page fault, and writing ``5`` to
  ``/proc/self/clear_refs`` resets it to the current RSS (proc(5)). The peak is exact, however short
  the spike. The mark belongs to the whole process: two probes in one process reset each other, and
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` follows the reset too.
- ``"sample"``: a daemon thread reads psutil's RSS every ``interval`` seconds (and at every
  ``observe()``); a spike shorter than the interval can be missed. Used where the kernel mark is
  unavailable (other systems, or a kernel that refuses the reset).

``"auto"`` takes the kernel's mark where it can be reset, else samples.
"""

import numbers
import re
import sys
import threading

_MiB = 2.0**20
METHODS = ("auto", "kernel", "sample")


def resident_mb():
    """This process's resident set size now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / _MiB


def _write_clear_refs():
    # "5" resets only the peak RSS to the current RSS; other values would clear page-reference bits,
    # which we never touch.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _read_vm_hwm():
    with open("/proc/self/status") as f:
        match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise ValueError("no VmHWM in /proc/self/status")
    return int(match.group(1)) * 1024


def _kernel_peak_resettable():
    """Whether the kernel's resident-memory high-water mark (VmHWM) can be read and reset here."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        _write_clear_refs()
        return _read_vm_hwm() > 0
    except (OSError, ValueError):
        return False


class PeakResidentMemory:
    """Peak resident memory of this process since the last ``reset()`` (see the module docstring).

    As calls: ``start()`` (starts the sampling thread, if any), ``reset()``, ``observe()`` (one more
    sample, when sampling), ``peak()`` (bytes), ``stop()``. As a context manager, the block is
    measured: on entry it resets the peak and records ``baseline_mb`` (the resident size then,
    unless given), on exit it sets ``peak_mb`` (the block's peak, MiB) and ``added_mb``
    (``peak_mb - baseline_mb``: what the block added on top of the baseline).

    Args:
        method: ``"auto"``, ``"kernel"`` (ValueError where it is unavailable) or ``"sample"``.
        interval: seconds between samples when sampling.
        baseline_mb: the baseline of ``added_mb``, or None for the resident size on entry.
    """

    def __init__(self, method="auto", interval=0.005, baseline_mb=None):
        if method not in METHODS:
            raise ValueError(f"memory method must be 'auto', 'kernel' or 'sample', got {method!r}.")
        if not isinstance(interval, numbers.Real) or not interval > 0:
            raise ValueError(f"interval must be a float > 0 (seconds), got {interval!r}.")
        kernel = method != "sample" and _kernel_peak_resettable()
        if method == "kernel" and not kernel:
            raise ValueError(
                "memory='kernel' needs Linux's resettable VmHWM (/proc/self/clear_refs); use 'sample'."
            )
        self.method = "kernel" if kernel else "sample"
        self.interval = float(interval)
        self.baseline_mb = baseline_mb
        self._fixed_baseline = baseline_mb is not None
        self.peak_mb = self.added_mb = None
        self._peak, self._lock, self._stop, self._thread = 0, threading.Lock(), threading.Event(), None
        if self.method == "sample":
            import psutil  # only this path needs it

            self._process = psutil.Process()

    def start(self):
        if self.method == "sample" and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tfvit-peak-rss", daemon=True)
            self._thread.start()

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self):
        while not self._stop.wait(self.interval):
            self.observe()

    def observe(self):
        if self.method == "sample":
            rss = self._process.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def reset(self):
        if self.method == "kernel":
            _write_clear_refs()
        else:
            with self._lock:
                self._peak = 0
            self.observe()

    def peak(self):
        """The peak resident set size since the last ``reset()``, in bytes."""
        if self.method == "kernel":
            return _read_vm_hwm()
        self.observe()
        with self._lock:
            return self._peak

    def __enter__(self):
        if not self._fixed_baseline:
            self.baseline_mb = resident_mb()
        self.peak_mb = self.added_mb = None
        self.reset()
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.peak_mb = self.peak() / _MiB
        self.added_mb = self.peak_mb - self.baseline_mb
        return False
