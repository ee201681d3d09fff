"""Callbacks that make runs measurable and comparable in TensorBoard.

``TrainingSpeed`` adds time, throughput and peak memory per epoch to the logs; ``StepScalars`` writes
the loss and learning rate per optimizer update; ``log_hparams`` records a run's hyperparameters for
TensorBoard's HParams dashboard; ``standard_callbacks`` wires them with Keras's TensorBoard, CSVLogger,
best-only ModelCheckpoint and EarlyStopping in the order that makes every value reach every logger.

Keras passes one ``logs`` dict through the callbacks in list order at the end of an epoch, so a
callback that adds values (``TrainingSpeed``, ``StepScalars``) must come before those that record them
(``keras.callbacks.TensorBoard``, ``CSVLogger``); ``History`` and the progress bar are appended by
Keras after every user callback and always see them.
"""

import json
import numbers
import os
import re
import sys
import threading
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from tfvit import _validation as check

_MiB = 2.0**20


def _scalar(value):
    return float(keras.ops.convert_to_numpy(value))


def _loss_tracker(model):
    """The ``Mean`` behind ``logs["loss"]``: its running total and count give each update's own loss."""
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "total") and hasattr(metric, "count"):
            return metric
    return None


def _linux_peak_resettable():
    """Whether the kernel's resident-memory high-water mark (VmHWM) can be read and reset here."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        _write_clear_refs()
        return _read_vm_hwm() > 0
    except (OSError, ValueError):
        return False


def _write_clear_refs():
    # "5" resets only the peak RSS to the current RSS (Linux >= 4.0, proc(5)); other values would
    # clear page-reference bits, which we never touch.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _read_vm_hwm():
    with open("/proc/self/status") as f:
        match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise ValueError("no VmHWM in /proc/self/status")
    return int(match.group(1)) * 1024


class _PeakResidentMemory:
    """Peak resident memory (bytes) of this process since the last ``reset()``.

    ``"kernel"``: Linux keeps the exact high-water mark of the resident set (VmHWM, updated by the
    kernel at every page fault) and lets a process reset it, so the peak is exact, spikes included.
    Side effect: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` follows the reset too.
    ``"sample"``: a daemon thread samples psutil's RSS every ``interval`` seconds (and at every batch
    end); a spike shorter than the interval can be missed. Used where the kernel mark is unavailable.
    """

    def __init__(self, method, interval):
        kernel = method != "sample" and _linux_peak_resettable()
        if method == "kernel" and not kernel:
            raise ValueError(
                "memory='kernel' needs Linux's resettable VmHWM (/proc/self/clear_refs); use 'sample'."
            )
        self.method = "kernel" if kernel else "sample"
        self.interval = interval
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
        if self.method == "kernel":
            return _read_vm_hwm()
        self.observe()
        with self._lock:
            return self._peak


class TrainingSpeed(keras.callbacks.Callback):
    """Add per-epoch time, throughput and peak memory to the epoch logs.

    - ``epoch_time``: seconds from ``on_epoch_begin`` to this callback's ``on_epoch_end``, so it
      includes validation and the callbacks that run before it.
    - ``step_time``: mean seconds per training batch, timed from ``on_train_batch_begin`` to
      ``on_train_batch_end`` (Keras's TensorFlow loop has the step's results in hand by then, so the
      time covers the whole step on an accelerator too). The first epoch includes graph tracing.
    - ``images_per_second``: training images / summed batch time = B / step_time with ``batch_size``
      B. Without ``batch_size``, the images are counted by the sample-weighted loss mean that Keras's
      ``train_step`` (and ``GradientAccumulationModel``) updates, which also counts a short last batch
      exactly; if the model has no such tracker, the value is left out.
    - ``peak_memory_mb``: peak resident memory of the process during the epoch, in MiB (see
      ``memory``): host memory, which holds the model and data on CPU.
    - ``gpu_peak_memory_mb``: where GPUs exist, TensorFlow's allocator peak during the epoch, in MiB,
      the largest over the visible GPUs (the one that would run out first).

    Put it before ``keras.callbacks.TensorBoard`` and ``CSVLogger`` in the callback list (as
    ``standard_callbacks`` does): Keras hands the epoch logs to the callbacks in order.

    Args:
        batch_size: images per training batch, or None to count them (see above).
        memory: ``"auto"`` (Linux's exact high-water mark where it can be reset, else sampling),
            ``"kernel"`` or ``"sample"``.
        sample_interval: seconds between samples when sampling.
    """

    def __init__(self, batch_size=None, memory="auto", sample_interval=0.02):
        super().__init__()
        self.batch_size = None if batch_size is None else check.positive_int("batch_size", batch_size)
        if memory not in ("auto", "kernel", "sample"):
            raise ValueError(f"memory must be 'auto', 'kernel' or 'sample', got {memory!r}.")
        if not isinstance(sample_interval, numbers.Real) or not sample_interval > 0:
            raise ValueError(f"sample_interval must be a float > 0 (seconds), got {sample_interval!r}.")
        self.memory = memory
        self.sample_interval = float(sample_interval)
        self._probe = None

    def on_train_begin(self, logs=None):
        self._probe = _PeakResidentMemory(self.memory, self.sample_interval)
        self._probe.start()
        self._gpus = [f"GPU:{i}" for i in range(len(tf.config.list_logical_devices("GPU")))]
        try:
            for gpu in self._gpus:
                tf.config.experimental.get_memory_info(gpu)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            # Some device plugins keep no allocator statistics: report host memory only.
            warnings.warn(f"TrainingSpeed: no GPU memory statistics here ({error}); gpu_peak_memory_mb is left out.")
            self._gpus = []

    def on_train_end(self, logs=None):
        if self._probe is not None:
            self._probe.stop()

    def on_epoch_begin(self, epoch, logs=None):
        self._probe.reset()
        for gpu in self._gpus:
            tf.config.experimental.reset_memory_stats(gpu)
        self._batches, self._busy, self._images = 0, 0.0, 0.0
        self._tracker = _loss_tracker(self.model) if self.batch_size is None else None
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._first_batch = batch
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._busy += time.perf_counter() - self._batch_start
        # With steps_per_execution > 1 one begin/end pair covers several batches.
        self._batches += batch - self._first_batch + 1
        if self._tracker is not None:
            self._images = _scalar(self._tracker.count)  # reset by fit at each epoch start
        self._probe.observe()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["epoch_time"] = time.perf_counter() - self._epoch_start
        if self._batches:
            logs["step_time"] = self._busy / self._batches
            images = self.batch_size * self._batches if self.batch_size else self._images
            if images:
                logs["images_per_second"] = images / self._busy
        logs["peak_memory_mb"] = self._probe.peak() / _MiB
        if self._gpus:
            peak = max(tf.config.experimental.get_memory_info(gpu)["peak"] for gpu in self._gpus)
            logs["gpu_peak_memory_mb"] = peak / _MiB


class StepScalars(keras.callbacks.Callback):
    """TensorBoard scalars per optimizer update, and the learning rate per epoch in the logs.

    Every ``every_n_steps`` updates (steps s = n, 2n, ... of ``optimizer.iterations``) it writes to
    ``logdir/train``, next to ``keras.callbacks.TensorBoard``'s ``epoch_*`` curves:

    - ``step_loss``: the loss of update s alone (the mean over its examples), recovered from the
      running total and count of Keras's loss mean; ``logs["loss"]`` itself is the epoch's running mean.
      If the model has no such mean, the running mean is written instead.
    - ``step_learning_rate``: ``optimizer.learning_rate`` after update s, i.e. the schedule evaluated
      at ``optimizer.iterations`` = s: the rate of the next update (Keras's ``epoch_learning_rate``
      convention). Counting in updates, it is unaffected by gradient accumulation.

    At each epoch end it sets ``logs["learning_rate"]`` for ``History`` and ``CSVLogger``.
    Two event files share ``logdir/train``; a finished run shows both, and ``tensorboard
    --reload_multifile=true`` keeps both live during training.
    """

    def __init__(self, logdir, every_n_steps=10, subdir="train"):
        super().__init__()
        self.logdir = os.fspath(logdir)
        self.every_n_steps = check.positive_int("every_n_steps", every_n_steps)
        self.subdir = subdir
        self._writer = None

    def _optimizer(self):
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("StepScalars needs a compiled model with an optimizer.")
        return optimizer

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(os.path.join(self.logdir, self.subdir))
        self._step = int(_scalar(self._optimizer().iterations))
        self._tracker = _loss_tracker(self.model)
        self._seen = (0.0, 0.0)

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = (0.0, 0.0)  # fit resets the loss mean just before this

    def on_train_batch_end(self, batch, logs=None):
        step = int(_scalar(self._optimizer().iterations))
        if step == self._step:
            return  # a micro-batch of Keras's built-in accumulation: no update yet
        self._step = step
        due, before_due = step % self.every_n_steps == 0, (step + 1) % self.every_n_steps == 0
        if not (due or before_due):
            return
        loss = (logs or {}).get("loss")
        if self._tracker is not None:
            total, count = _scalar(self._tracker.total), _scalar(self._tracker.count)
            if due and count > self._seen[1]:
                loss = (total - self._seen[0]) / (count - self._seen[1])
            self._seen = (total, count)
        if due:
            with self._writer.as_default(step=step):
                if loss is not None:
                    tf.summary.scalar("step_loss", loss)
                tf.summary.scalar("step_learning_rate", _scalar(self._optimizer().learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _scalar(self._optimizer().learning_rate)
        if self._writer is not None:
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _hparam_value(name, value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"hparams[{name!r}] must be a bool, int, float or str (what TensorBoard's HParams dashboard "
        f"shows), got {value!r} ({type(value).__name__}); pass str(value) to record it as text."
    )


def _hparam_metric(metric):
    """``"validation/epoch_accuracy"`` -> the tag ``epoch_accuracy`` in the run's ``validation`` folder."""
    if isinstance(metric, hp.Metric):
        return metric
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metrics must hold tags such as 'validation/epoch_accuracy', got {metric!r}.")
    group, _, tag = metric.partition("/")
    if group in ("train", "validation") and tag:
        return hp.Metric(tag, group=group)
    return hp.Metric(metric)


def log_hparams(logdir, hparams, metrics=None, trial_id=None):
    """Record a run's hyperparameters for TensorBoard's HParams dashboard and in ``logdir/hparams.json``.

    ``logdir`` is the run's folder (the one holding ``train/`` and ``validation/``); the dashboard
    lists one session per run with these values next to its metrics. ``metrics`` (tags such as
    ``"validation/epoch_accuracy"`` or ``hp.Metric`` objects) also writes the ``hparams_config``
    that names the columns. TensorBoard takes that config from one run (any one) of the logdir, so
    runs to compare should log the same hparam names. ``trial_id`` defaults to the folder's name, so
    repeated runs of one configuration stay separate rows.

    Returns the hparams as written (numpy scalars converted to Python).
    """
    if not isinstance(hparams, dict):
        raise ValueError(f"hparams must be a dict of name -> value, got {type(hparams).__name__}.")
    values = {}
    for name, value in hparams.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"hparams names must be non-empty strings, got {name!r}.")
        values[name] = _hparam_value(name, value)
    metric_list = [_hparam_metric(m) for m in (metrics or ())]
    logdir = os.fspath(logdir)
    os.makedirs(logdir, exist_ok=True)
    with open(os.path.join(logdir, "hparams.json"), "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        if metric_list:
            hp.hparams_config(hparams=[hp.HParam(name) for name in sorted(values)], metrics=metric_list)
        hp.hparams(values, trial_id=trial_id or os.path.basename(os.path.normpath(logdir)))
    writer.close()
    return values


def _monitor_tag(monitor):
    """Keras log key -> the TensorBoard tag that keras.callbacks.TensorBoard writes for it."""
    if monitor.startswith("val_"):
        return f"validation/epoch_{monitor[4:]}"
    return f"train/epoch_{monitor}"


def standard_callbacks(
    run_dir,
    *,
    monitor="val_accuracy",
    mode="auto",
    early_stopping_patience=None,
    best_checkpoint=True,
    batch_size=None,
    hparams=None,
    hparams_metrics=None,
    every_n_steps=10,
    profile_batch=0,
    histogram_freq=0,
    memory="auto",
):
    """The callbacks of a tfvit run, in the order that lets every logger see every value.

    Returns ``[TrainingSpeed, StepScalars, TensorBoard(run_dir), CSVLogger(run_dir/history.csv,
    append=True), ModelCheckpoint(run_dir/best.keras, best only on monitor)?, EarlyStopping?]``.
    ``hparams`` (a dict) is recorded now with ``log_hparams``, its metrics defaulting to the train and
    validation loss and the monitored value. ``profile_batch`` is passed to Keras's TensorBoard
    (0: no profiling; ``(10, 20)``: profile batches 10 to 20).
    """
    run_dir = os.fspath(run_dir)
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must be a Keras log key such as 'val_accuracy', got {monitor!r}.")
    if early_stopping_patience is not None:
        if not isinstance(early_stopping_patience, int) or isinstance(early_stopping_patience, bool) \
                or early_stopping_patience < 0:
            raise ValueError(
                f"early_stopping_patience must be None or an integer >= 0, got {early_stopping_patience!r}."
            )
    callbacks = [
        TrainingSpeed(batch_size=batch_size, memory=memory),
        StepScalars(run_dir, every_n_steps=every_n_steps),
        # Graphs of these models are megabytes per run and rarely looked at: not written.
        keras.callbacks.TensorBoard(
            log_dir=run_dir, histogram_freq=histogram_freq, profile_batch=profile_batch, write_graph=False
        ),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
    ]
    if best_checkpoint:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "best.keras"), monitor=monitor, mode=mode, save_best_only=True,
        ))
    if early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=early_stopping_patience,
        ))
    os.makedirs(run_dir, exist_ok=True)
    if hparams is not None:  # last: every argument has been checked by now
        if hparams_metrics is None:
            tags = ["train/epoch_loss", "validation/epoch_loss", _monitor_tag(monitor)]
            hparams_metrics = list(dict.fromkeys(tags))
        log_hparams(run_dir, hparams, metrics=hparams_metrics)
    return callbacks
