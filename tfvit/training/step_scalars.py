"""``StepScalars``: the loss and learning rate of each optimizer update, as TensorBoard scalars.

Keras's ``logs["loss"]`` is the epoch's running mean, not the loss of the last update. The mean is
a ``keras.metrics.Mean`` with a running (sample-weighted) ``total`` and ``count``; read just after
update s - 1 and again just after update s, the difference of the totals over the difference of the
counts is the mean loss of update s alone, over every batch that went into it. Updates are counted
by ``optimizer.iterations``, which moves once per applied update, so under Keras's optimizer-side
accumulation (whose batches apply nothing until the last of each group) the steps are still updates.
"""

import os

import keras
import tensorflow as tf

from tfvit import _validation as check


def _scalar(value):
    return float(keras.ops.convert_to_numpy(value))


def loss_tracker(model):
    """The ``Mean`` behind ``logs["loss"]``: its running total and count give each update's own loss."""
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "total") and hasattr(metric, "count"):
            return metric
    return None


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
        self._tracker = loss_tracker(self.model)
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
