"""``standard_callbacks``: the callbacks of a tfvit run, in the order that makes every value reach every logger.

The run's callbacks are ``StopOnNonFiniteLoss`` (ends training at the first NaN or infinite batch
loss, before the epoch's saves; ``tfvit.training.finite_loss``), ``TrainingSpeed`` (time, throughput
and peak memory per epoch; ``tfvit.training.speed``), ``StepScalars`` (loss and learning rate per
optimizer update; ``tfvit.training.step_scalars``), Keras's TensorBoard and CSVLogger, a best-only
ModelCheckpoint and EarlyStopping, with the hyperparameters recorded by ``log_hparams``
(``tfvit.training.hparams``).

``StopOnNonFiniteLoss`` comes first, so that no callback after it records the non-finite batch.
Keras passes one ``logs`` dict through the callbacks in list order at the end of an epoch, so a
callback that adds values (``TrainingSpeed``, ``StepScalars``) must come before those that record them
(``keras.callbacks.TensorBoard``, ``CSVLogger``); ``History`` and the progress bar are appended by
Keras after every user callback and always see them.
"""

import os

import keras

from tfvit.training.finite_loss import NonFiniteLoss, StopOnNonFiniteLoss
from tfvit.training.hparams import log_hparams
from tfvit.training.speed import TrainingSpeed
from tfvit.training.step_scalars import StepScalars

__all__ = ["NonFiniteLoss", "StepScalars", "StopOnNonFiniteLoss", "TrainingSpeed", "log_hparams",
           "standard_callbacks"]


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
    stop_on_non_finite=True,
):
    """The callbacks of a tfvit run, in the order that lets every logger see every value.

    Returns ``[StopOnNonFiniteLoss?, TrainingSpeed, StepScalars, TensorBoard(run_dir), CSVLogger(run_dir/history.csv,
    append=True), ModelCheckpoint(run_dir/best.keras, best only on monitor)?, EarlyStopping?]``.
    ``hparams`` (a dict) is recorded now with ``log_hparams``, its metrics defaulting to the train and
    validation loss and the monitored value. ``profile_batch`` is passed to Keras's TensorBoard
    (0: no profiling; ``(10, 20)``: profile batches 10 to 20). ``stop_on_non_finite``: end training with
    ``NonFiniteLoss`` at the first batch whose loss is NaN or infinite (False: train on, as Keras does).
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
    callbacks = [StopOnNonFiniteLoss()] if stop_on_non_finite else []
    callbacks += [
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
