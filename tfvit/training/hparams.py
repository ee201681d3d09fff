"""``log_hparams``: a run's hyperparameters for TensorBoard's HParams dashboard, and as JSON.

The dashboard reads two summaries: one ``hparams`` session per run (its values, under a trial id)
and one ``hparams_config`` naming the hyperparameter and metric columns, which TensorBoard takes
from any one run of the logdir. Metrics are scalar tags that the runs already write, named by the
run's subfolder (``train`` / ``validation``, as ``keras.callbacks.TensorBoard`` writes them) and the
tag. The dashboard shows only bool, number and string values, so anything else is refused rather
than silently turned into text.

``log_run_metrics`` writes a finished run's own figures (test accuracy, steady time per epoch, ...)
as scalars in the run's ``result`` folder, where the dashboard reads them as metrics
(``"result/test_accuracy"``) beside the per-epoch curves.
"""

import json
import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

# The run subfolder of log_run_metrics's scalars.
RESULT_GROUP = "result"


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
    if group in ("train", "validation", RESULT_GROUP) and tag:
        return hp.Metric(tag, group=group)
    return hp.Metric(metric)


def log_hparams(logdir, hparams, metrics=None, trial_id=None):
    """Record a run's hyperparameters for TensorBoard's HParams dashboard and in ``logdir/hparams.json``.

    ``logdir`` is the run's folder (the one holding ``train/`` and ``validation/``); the dashboard
    lists one session per run with these values next to its metrics. ``metrics`` (tags such as
    ``"validation/epoch_accuracy"`` or ``hp.Metric`` objects) also writes the ``hparams_config``
    that names the columns, in the order of ``hparams`` (the dashboard shows the first few by default).
    TensorBoard takes that config from one run (any one) of the logdir, so
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
            # In the order given: the dashboard shows the first few columns by default.
            hp.hparams_config(hparams=[hp.HParam(name) for name in values], metrics=metric_list)
        hp.hparams(values, trial_id=trial_id or os.path.basename(os.path.normpath(logdir)))
    writer.close()
    return values


def log_run_metrics(logdir, metrics, step=0):
    """Write ``metrics`` ({name: number}) as scalars ``name`` at ``step`` in ``logdir/result``, the run's
    figures that the HParams dashboard shows as the metrics ``"result/<name>"``. Values that are not
    finite (a figure the run could not measure) are left out: the dashboard shows them as empty."""
    writer = tf.summary.create_file_writer(os.path.join(os.fspath(logdir), RESULT_GROUP))
    with writer.as_default():
        for name, value in metrics.items():
            if value is not None and np.isfinite(value):
                tf.summary.scalar(name, float(value), step=step)
    writer.close()
