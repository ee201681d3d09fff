"""``TrainingSpeed``: per-epoch time, throughput and peak memory in the epoch logs.

A step is timed from ``on_train_batch_begin`` to ``on_train_batch_end``: Keras's TensorFlow loop has
the step's results in hand by then, so the time covers the whole step on an accelerator too, and
what runs between steps (callbacks, validation) is left out of ``step_time`` but counted in
``time``. Images per second is images / summed step time; without a fixed batch size the
images are counted by the sample-weighted loss mean that ``train_step`` updates, which counts a
short last batch exactly. Peak memory is measured per epoch (reset at each epoch's start) with
``tfvit.training.memory.PeakResidentMemory``, and on GPUs with TensorFlow's allocator statistics.
"""

import numbers
import time
import warnings

import keras
import tensorflow as tf

from tfvit import _validation as check
from tfvit.training.memory import METHODS, PeakResidentMemory
from tfvit.training.step_scalars import loss_tracker

_MiB = 2.0**20


class TrainingSpeed(keras.callbacks.Callback):
    """Add per-epoch time, throughput and peak memory to the epoch logs.

    - ``time``: seconds from ``on_epoch_begin`` to this callback's ``on_epoch_end``, so it includes
      validation and the callbacks that run before it (TensorBoard's tag: ``epoch_time``).
    - ``step_time``: mean seconds per training batch, timed from ``on_train_batch_begin`` to
      ``on_train_batch_end``. The first epoch includes graph tracing.
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
            ``"kernel"`` or ``"sample"`` (``PeakResidentMemory``'s methods).
        sample_interval: seconds between samples when sampling.
    """

    def __init__(self, batch_size=None, memory="auto", sample_interval=0.02):
        super().__init__()
        self.batch_size = None if batch_size is None else check.positive_int("batch_size", batch_size)
        if memory not in METHODS:
            raise ValueError(f"memory must be 'auto', 'kernel' or 'sample', got {memory!r}.")
        if not isinstance(sample_interval, numbers.Real) or not sample_interval > 0:
            raise ValueError(f"sample_interval must be a float > 0 (seconds), got {sample_interval!r}.")
        self.memory = memory
        self.sample_interval = float(sample_interval)
        self._probe = None

    def on_train_begin(self, logs=None):
        self._probe = PeakResidentMemory(self.memory, self.sample_interval)
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
        self._tracker = loss_tracker(self.model) if self.batch_size is None else None
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._first_batch = batch
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._busy += time.perf_counter() - self._batch_start
        # With steps_per_execution > 1 one begin/end pair covers several batches.
        self._batches += batch - self._first_batch + 1
        if self._tracker is not None:
            self._images = float(keras.ops.convert_to_numpy(self._tracker.count))  # reset by fit at each epoch start
        self._probe.observe()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["time"] = time.perf_counter() - self._epoch_start
        if self._batches:
            logs["step_time"] = self._busy / self._batches
            images = self.batch_size * self._batches if self.batch_size else self._images
            if images:
                logs["images_per_second"] = images / self._busy
        logs["peak_memory_mb"] = self._probe.peak() / _MiB
        if self._gpus:
            peak = max(tf.config.experimental.get_memory_info(gpu)["peak"] for gpu in self._gpus)
            logs["gpu_peak_memory_mb"] = peak / _MiB
