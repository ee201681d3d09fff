"""One training run of a study, from its configuration to a dictionary of measured results.

Wires tfvit's parts in one direction: data -> model -> training -> callbacks/logs -> result. A run
lives in its own folder under the study's log root, ``<arm>/<short config>``
(``tfvit.experiments.run_folders``): TensorBoard events, history.csv, config.json, hparams.json and, while
it trains, the resume state. Starting the same configuration again continues an interrupted run, and
returns a finished run's result without training again. Once a run has finished, its folder keeps the
final weights (model.weights.h5) and result.json, and the resume state is deleted (it holds the
optimizer's moments too: three times the weights); ``save_best`` also keeps the best epoch's
best.keras.

The end of a run is as safe as its middle: the final evaluation and the final weights are those of the saved
state, restored when a restart finds the training over (``tfvit.training.resume.fit_resumable``); the weights are
written atomically and read back (``tfvit.experiments.final_weights``), result.json records their SHA-256 and is
written after them, and only then is the resume state deleted. A result whose weights file is missing or differs
is not taken as finished.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time

import keras
import numpy as np

import tfvit
from tfvit import data as tfdata
from tfvit._validation import constructor_arguments
from tfvit.experiments.config import NOT_IDENTITY, RunConfig
from tfvit.experiments.final_weights import FinalWeightsNotSaved, WEIGHTS_FILE, weights_match, write_final_weights
from tfvit.experiments.history import read_history, repair_history
from tfvit.experiments.json_output import write_json
from tfvit.experiments.report import with_status
from tfvit.experiments.run_folders import run_folder
from tfvit.experiments.run_lock import run_lock
from tfvit.models import model_config
from tfvit.training import GradientAccumulationModel, distribution
from tfvit.training.callbacks import standard_callbacks
from tfvit.training.finite_loss import NonFiniteLoss
from tfvit.training.hparams import RESULT_GROUP, log_run_metrics
from tfvit.training.finetune import freeze_for_finetuning, layer_decay_multipliers
from tfvit.training.optimizers import build_optimizer
from tfvit.training.precision import precision
from tfvit.training.resume import (TrainingInterrupted, epochs_text, fit_resumable, resume_epoch, stopped_early,
                                  traced_epochs)
from tfvit.training.resume_state import latest_state
from tfvit.training.schedules import WarmupCosineDecay, steps_per_epoch


def steady_mean(history, key, traced=(0,)):
    """Mean of ``history[key]`` over the epochs that built no step function: all but the ``traced``
    epochs (0-based; the first epoch of each process's fit traces and compiles, so a resumed run's
    retrace is left out too; ``tfvit.training.resume.traced_epochs``). The mean of all epochs when every
    one traced (a one-epoch run), nan without values."""
    values = np.asarray(history.get(key, []), dtype=float)
    epochs = np.asarray(history.get("epoch", range(len(values))), dtype=int)[:len(values)]
    finite = np.isfinite(values)
    steady = values[finite & ~np.isin(epochs, list(traced))]
    return float(np.mean(steady)) if len(steady) else float(np.mean(values[finite])) if finite.any() else float("nan")


def first_epoch_time(history):
    """Seconds of the run's first epoch, which includes tracing and compiling the steps (nan without)."""
    times = history.get("time", [])
    return float(times[0]) if times else float("nan")


def finished_result(config, run_dir, report=None):
    """The saved result of ``config`` when its run finished earlier (same identity) and its final weights are
    the ones it describes (the SHA-256 it records), else None. A result.json that cannot be read, or whose
    weights file is missing or differs, is told to ``report(message)`` (if given) and counts as no result: the
    run is finished again from its resume state if it still has one, else trained again; either gives the
    same result."""
    path = os.path.join(run_dir, "result.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            result = json.load(f)
        saved = {k: v for k, v in result["config"].items() if k not in NOT_IDENTITY}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        if report:
            report(f"{path} is damaged ({type(error).__name__}: {error}); {_again(run_dir)}")
        return None
    if saved != config.identity():
        return None
    weights = os.path.join(run_dir, WEIGHTS_FILE)
    # Results written before tfvit recorded the checksum have none to compare.
    if "weights_sha256" in result and not weights_match(weights, result["weights_sha256"]):
        if report:
            report(f"{weights} is {'missing' if not os.path.exists(weights) else 'not the file'} that "
                   f"{path} describes (its SHA-256 differs); {_again(run_dir)}")
        return None
    return result


def _again(run_dir):
    """What happens to a run whose result cannot be used, in words."""
    if resume_epoch(os.path.join(run_dir, "resume")):
        return "the run is finished again from its resume state"
    return "the run is trained again"


def _to_stderr(message):
    print(message, file=sys.stderr, flush=True)


def trained_model(result, logdir):
    """The model of a finished run (a ``run`` result) under the study root ``logdir``, with its final
    weights, in float32 for inference and saliency maps."""
    config = RunConfig(**dict(result["config"], pretrained=""))  # the final weights replace any checkpoint
    model, _ = build_model(config)
    model.load_weights(os.path.join(logdir, result["folder"], WEIGHTS_FILE))
    return model


def build_model(config):
    """The registry model of ``config`` for its dataset: classes, image size, checkpoint, regularisation,
    frozen weights. Returns (model, FinetuneSummary)."""
    overrides = {"dropout": config.dropout} if config.dropout else {}
    if config.drop_path >= 0:
        overrides["drop_path_rate"] = config.drop_path
    accepted = constructor_arguments(model_config(config.model)[0])
    for name, value in overrides.items():
        flag = {"dropout": "--dropout", "drop_path_rate": "--drop-path"}[name]
        if name not in accepted:  # e.g. a ResNet, which has neither
            raise ValueError(f"{flag} {value:g} does not apply to {config.model}: it has no {name} setting. "
                             f"Leave the flag out for this model.")
    info = tfdata.dataset_info(config.dataset)
    model = tfvit.create_model(config.model, num_classes=info.num_classes, image_size=config.image_size or None,
                               pretrained=config.pretrained or None, **overrides)
    frozen = freeze_for_finetuning(model, config.finetune, frozen_blocks=None if config.frozen_blocks < 0
                                   else config.frozen_blocks)
    return model, frozen


def compile_trainer(config, model, updates_per_epoch, replicas=1):
    """``model`` (wrapped for accumulation when ``config.accum`` > 1, and on more than one ``replicas``,
    whose step weighs the replicas' slices by the global batch) compiled with the configuration's
    optimizer, warmup-cosine schedule over ``epochs * updates_per_epoch`` updates, loss and XLA choice."""
    schedule = WarmupCosineDecay(
        config.learning_rate, total_steps=config.epochs * updates_per_epoch,
        warmup_steps=int(round(config.warmup_epochs * updates_per_epoch)),
    )
    wrap = config.accum > 1 or replicas > 1
    trainer = GradientAccumulationModel(model, accum=config.accum) if wrap else model
    multipliers = layer_decay_multipliers(model, config.layer_decay) if config.layer_decay else None
    optimizer = build_optimizer(config.optimizer, schedule, weight_decay=config.weight_decay,
                                lr_multipliers=multipliers)
    trainer.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=["accuracy"], jit_compile=config.jit,
    )
    return trainer


def run(config, logdir="logs", verbose=1):
    """Train and evaluate ``config``; return its result dictionary (also saved as result.json).

    With ``verbose``, says when the run finished earlier (its result is read back) or resumes a saved
    state. Ctrl-C comes out as ``tfvit.training.resume.TrainingInterrupted`` naming the run and the epochs
    saved. The run's folder is locked while it runs (``tfvit.experiments.run_lock``: a second copy stops
    with ``RunInUse``); damaged files in it are reported on stderr and recovered from (the epoch before a
    damaged resume state, the whole rows of history.csv, a new result for an unreadable result.json). The
    configuration's precision policy holds while the model is built and trained and is put back
    afterwards, also when training fails.

    ``config.strategy`` chooses the devices (``tfvit.training.distribution``); the model is built, compiled,
    trained and evaluated in its scope. On a multi-worker job every worker reads the chief's folder (a
    finished result, the resume state to continue from) and only the chief writes in it and holds its
    lock; the others write under a temporary folder of their own."""
    distributed = distribution.strategy_for(config.strategy)
    chief = distribution.is_chief()
    run_dir = run_folder(config, logdir, create=chief, report=_to_stderr)
    label = os.path.relpath(run_dir, logdir)
    with run_lock(run_dir, label) if chief else contextlib.nullcontext():
        resume_dir = os.path.join(run_dir, "resume")
        result = finished_result(config, run_dir, report=_to_stderr)
        if result is not None:
            if verbose:
                print(f"{label}: finished earlier, results read from {os.path.join(run_dir, 'result.json')}")
            if chief:  # left by a process stopped after writing the result, before deleting its resume state
                shutil.rmtree(resume_dir, ignore_errors=True)
            _say_what_was_not_kept(config, run_dir, label)
            return result
        saved = latest_state(resume_dir, report=_to_stderr)[0]  # says so when it passes over a damaged state
        stopped = stopped_early(resume_dir)
        if chief:  # the rows of epochs the state does not hold are trained again: keep only the whole rows before them
            repair_history(run_dir, saved)
        if verbose and saved:
            over = saved >= config.epochs or stopped
            print(f"{label}: {epochs_text(saved, config.epochs, stopped)}; evaluating it" if over else
                  f"resuming {label} from epoch {saved + 1}/{config.epochs}", flush=True)
        out_dir = distribution.writable(run_dir)
        try:
            with precision(config.precision), distribution.scope(distributed):
                result = _train_and_evaluate(config, run_dir, out_dir, label, verbose, distributed)
        except TrainingInterrupted:
            raise
        except NonFiniteLoss as diverged:
            diverged.name = label
            raise
        except KeyboardInterrupt as interrupt:  # while the data, the model or the evaluation was being made
            raise TrainingInterrupted(label, resume_epoch(resume_dir), config.epochs, training=False,
                                      stopped=stopped_early(resume_dir)) from interrupt
        result_path = os.path.join(out_dir, "result.json")
        try:
            # After the weights it names, so that a result.json always describes a complete weights file.
            write_json(result_path, with_status(result))
            # The result and the final weights are written: the resume state has nothing left to continue.
            shutil.rmtree(os.path.join(out_dir, "resume"), ignore_errors=True)
        except OSError as error:
            raise FinalWeightsNotSaved(
                f"cannot write the result of {label} to {result_path}: {error.strerror or error}. The trained "
                f"state is kept in {resume_dir}; free space (or make the folder writable), then run the same "
                f"command to finish the run without training it again."
            ) from error
        except KeyboardInterrupt as interrupt:
            finished = finished_result(config, run_dir) is not None
            raise TrainingInterrupted(label, resume_epoch(resume_dir), config.epochs, training=False,
                                      stopped=stopped_early(resume_dir), finished=finished) from interrupt
    return result


def _say_what_was_not_kept(config, run_dir, label):
    """--save-best asked of a run that finished without it: its best epoch's model was never kept and cannot be
    made now. Said on stderr, so that the flag is not silently ignored."""
    if config.save_best and not os.path.exists(os.path.join(run_dir, "best.keras")):
        _to_stderr(f"note: --save-best: {label} finished earlier without it, so its best epoch's model was not kept "
                   f"and cannot be made now. To have best.keras, train it again under another --logdir (or delete "
                   f"{run_dir}).")


def _run_hparams(config, model, trainer, num_train, num_test):
    """What the HParams dashboard shows of a run: its identity with the values actually used (the
    optimizer's weight decay, the model's own dropout, stochastic-depth rate and image size, the examples
    trained and tested on), its arm and its digest."""
    model_config = model.get_config()
    height, width = model.image_size
    # First what tells a study's runs apart (the dashboard shows the first columns), then the rest.
    hparams = {"arm": config.group or config.model, "model": config.model, "batch_size": config.batch_size,
               "accum": config.accum, "learning_rate": config.learning_rate, "epochs": config.epochs}
    hparams.update((k, v) for k, v in config.identity().items() if k not in hparams and k not in ("limit_train", "limit_test"))
    hparams.update(
        run_id=config.name, weight_decay=_weight_decay(trainer.optimizer),
        dropout=float(model_config.get("dropout", config.dropout)),
        drop_path=float(model_config.get("drop_path_rate", 0.0)),
        image_size=int(height) if height == width else f"{height}x{width}", train_examples=int(num_train),
        test_examples=int(num_test),
    )
    return hparams


def _weight_decay(optimizer):
    """The decoupled weight decay ``optimizer`` applies (0 for none); through mixed_float16's LossScaleOptimizer,
    which has no weight decay of its own (None), that of the optimizer it wraps."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return float(optimizer.weight_decay or 0.0)


# The run's own figures in the HParams dashboard (log_run_metrics), by result key.
RESULT_METRICS = ("test_accuracy", "test_loss", "time_per_epoch", "first_epoch_time", "images_per_second",
                  "peak_memory_mb")


def _train_and_evaluate(config, run_dir, out_dir, label, verbose, distributed=None):
    """The run in ``run_dir``: its saved state read from there, what it writes put in ``out_dir`` (the same
    folder but on a multi-worker job's other workers). Training and evaluation batches reach the replicas
    of ``distributed`` as their slices of the global batches (``distribution.replica_batches``)."""
    keras.utils.set_random_seed(config.seed)
    model, frozen = build_model(config)
    data_dir = config.data_dir or None
    # A checkpoint's weights expect the images it was trained on: its mean, std and interpolation (timm's and
    # transformers' convention), not the dataset's statistics. None for random weights.
    preprocessing = getattr(model, "preprocessing", None)

    def loader(split, **kwargs):
        limit = config.limit_train if split == "train" else config.limit_test
        return tfdata.load(config.dataset, split, config.batch_size, image_size=model.image_size,
                           channels=model.in_channels, seed=config.seed, limit=limit or None, one_hot=True,
                           data_dir=data_dir, preprocessing=preprocessing, **kwargs)

    augment = config.augment or None
    test = distribution.replica_batches(loader("test"), distributed)
    def examples(split, limit):
        return len(tfdata.load_arrays(config.dataset, split, limit=limit or None, data_dir=data_dir)[1])

    num_train, num_test = examples("train", config.limit_train), examples("test", config.limit_test)
    distribution.check_even_batches(distributed, config.batch_size, {"train": num_train, "test": num_test})
    updates_per_epoch = steps_per_epoch(num_train, config.batch_size)
    trainer = compile_trainer(config, model, updates_per_epoch, distribution.replicas(distributed))
    metrics = ["train/epoch_loss", "validation/epoch_loss", "validation/epoch_accuracy"]
    callbacks = standard_callbacks(
        out_dir, monitor="val_accuracy", batch_size=config.batch_size, best_checkpoint=config.save_best,
        hparams=_run_hparams(config, model, trainer, num_train, num_test),
        hparams_metrics=metrics + [f"{RESULT_GROUP}/{key}" for key in RESULT_METRICS],
        early_stopping_patience=config.patience or None,
    )
    resume_dir = os.path.join(run_dir, "resume")
    started = time.perf_counter()
    fit_resumable(
        trainer, lambda epoch: loader("train", augment=augment, epoch=epoch), config.epochs,
        os.path.join(out_dir, "resume"), updates_per_epoch, restore_from=resume_dir, callbacks=callbacks, name=label,
        validation_data=test, verbose=verbose,
        report=lambda message: None,  # run() has reported the state's damage, if any
    )
    wall = time.perf_counter() - started
    with distribution.expected_end_of_data(distributed):
        test_loss, test_accuracy = trainer.evaluate(test, verbose=0)
    weights_sha256 = write_final_weights(model, out_dir, label)
    history = read_history(out_dir)
    traced = traced_epochs(resume_dir)
    stats = tfvit.stats(model)
    result = {
        "config": dataclasses.asdict(config),
        "name": config.name,
        "folder": label,
        "group": config.group,
        "micro_batch": config.micro_batch,
        "preprocessing": preprocessing.to_dict() if preprocessing is not None else None,
        "train_examples": num_train,
        "steps_per_epoch": updates_per_epoch,
        # Updates applied: fewer than the steps when mixed_float16's loss scaling skipped overflowing ones.
        "updates": int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)),
        "epochs_run": len(history.get("epoch", [])),
        "stopped_early": stopped_early(resume_dir),
        "train_accuracy": history["accuracy"][-1] if history.get("accuracy") else float("nan"),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "best_test_accuracy": max(history.get("val_accuracy", [float("nan")])),
        # Steady state: the epochs that did not trace (see steady_mean); the first epoch on its own.
        "traced_epochs": traced,
        "time_per_epoch": steady_mean(history, "time", traced),
        "first_epoch_time": first_epoch_time(history),
        "time_per_step": steady_mean(history, "step_time", traced),
        "images_per_second": steady_mean(history, "images_per_second", traced),
        "peak_memory_mb": max(history.get("peak_memory_mb", [float("nan")])),
        "wall_time_this_call": wall,
        "params": stats.params,
        "trainable_params": frozen.trainable_params,
        "macs": stats.macs,
        # BatchNorm normalises each micro-batch by itself: the one layer that makes accumulation inexact.
        "batch_norm": any(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers()),
        "history": history,
        "weights_sha256": weights_sha256,  # of model.weights.h5: the weights this result describes
    }
    log_run_metrics(out_dir, {key: result[key] for key in RESULT_METRICS}, step=result["epochs_run"])
    return result


def epochs_left(config, logdir):
    """Epochs ``config`` still has to train under ``logdir``: 0 when it finished earlier, else its epochs
    less those its resume state holds."""
    run_dir = run_folder(config, logdir)
    if finished_result(config, run_dir) is not None:
        return 0
    return max(config.epochs - resume_epoch(os.path.join(run_dir, "resume")), 0)


def duration_text(seconds):
    """A rough duration: "40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_all(configs, logdir, verbose=1):
    """``run`` each configuration in turn, announcing it as ``[i/n] <arm>/<short config>``; returns the results
    in order.

    With ``verbose``, once a run has trained in this call, each announcement ends with an estimate of the
    study's time left: the seconds per epoch measured in this call (the whole time of the runs that
    trained, data, building, compiling and evaluation included, over the epochs they trained) times the
    epochs the runs from this one on still have to train (finished runs none, resumed runs those after
    their saved state). It takes every epoch to cost the same, so it is rough when the runs differ in
    model or data size, and it is an upper bound when early stopping ends runs sooner. A Ctrl-C says
    which run of the study it stopped (``TrainingInterrupted.study``), and so does a run that diverged
    (``NonFiniteLoss.study``)."""
    configs = list(configs)
    results, seconds, epochs_timed = [], 0.0, 0
    for i, config in enumerate(configs, 1):
        run_dir = run_folder(config, logdir)
        line = f"\n[{i}/{len(configs)}] {os.path.relpath(run_dir, logdir)}"
        if verbose and epochs_timed:
            left = sum(epochs_left(c, logdir) for c in configs[i - 1:])
            if left:
                line += f" (estimate: about {duration_text(seconds / epochs_timed * left)} left in the study)"
        print(line, flush=True)
        finished = finished_result(config, run_dir) is not None
        saved = resume_epoch(os.path.join(run_dir, "resume"))
        started = time.perf_counter()
        try:
            result = run(config, logdir=logdir, verbose=verbose)
        except (TrainingInterrupted, NonFiniteLoss) as stopped:
            stopped.study = (i, len(configs))
            raise
        trained = 0 if finished else int(result.get("epochs_run", config.epochs)) - saved
        if trained > 0:
            seconds += time.perf_counter() - started
            epochs_timed += trained
        results.append(result)
    return results
