"""One training run of a study, from its configuration to a dictionary of measured results.

Wires tfvit's parts in one direction: data -> model -> training -> callbacks/logs -> result. A run
lives in its own directory under the log root (TensorBoard events, history.csv, best.keras, the resume
state, result.json); starting the same configuration again continues an interrupted run, and returns a
finished run's result without training again.
"""

import csv
import dataclasses
import json
import os
import time

import keras
import numpy as np

import tfvit
from tfvit import data as tfdata
from tfvit.experiments.config import NOT_IDENTITY
from tfvit.training import GradientAccumulationModel
from tfvit.training.callbacks import standard_callbacks
from tfvit.training.finetune import freeze_for_finetuning, layer_decay_multipliers
from tfvit.training.optimizers import build_optimizer
from tfvit.training.precision import precision
from tfvit.training.resume import TrainingInterrupted, epochs_text, fit_resumable, resume_epoch
from tfvit.training.schedules import WarmupCosineDecay, steps_per_epoch


def _history(run_dir):
    """history.csv as {column: [values per epoch]}, one row per epoch even if a resumed run wrote an
    epoch twice (killed between the CSV row and the resume state: the later row wins)."""
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return {}
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = row
    columns = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else float("nan"))
    return columns


def steady_mean(history, key):
    """Mean of ``history[key]`` over the epochs that built no step function (``traced`` 0: not the first
    epoch of a process's fit, which traces and compiles), so a resumed run's retrace is left out too; the
    mean of all epochs when every one traced (a one-epoch run), nan without values."""
    values = np.asarray(history.get(key, []), dtype=float)
    traced = np.asarray(history.get("traced", [1.0] + [0.0] * (len(values) - 1)), dtype=float)[:len(values)]
    steady = values[(traced == 0) & np.isfinite(values)]
    finite = values[np.isfinite(values)]
    return float(np.mean(steady)) if len(steady) else float(np.mean(finite)) if len(finite) else float("nan")


def first_epoch_time(history):
    """Seconds of the run's first epoch, which includes tracing and compiling the steps (nan without)."""
    times = history.get("epoch_time", [])
    return float(times[0]) if times else float("nan")


def finished_result(config, run_dir):
    """The saved result of ``config`` when its run finished earlier (same identity), else None."""
    path = os.path.join(run_dir, "result.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    saved = {k: v for k, v in result.get("config", {}).items() if k not in NOT_IDENTITY}
    return result if saved == config.identity() else None


def build_model(config):
    """The registry model of ``config`` for its dataset: classes, image size, checkpoint, regularisation,
    frozen weights. Returns (model, FinetuneSummary)."""
    overrides = {"dropout": config.dropout} if config.dropout else {}
    if config.drop_path >= 0:
        overrides["drop_path_rate"] = config.drop_path
    info = tfdata.dataset_info(config.dataset)
    model = tfvit.create_model(config.model, num_classes=info.num_classes, image_size=config.image_size or None,
                               pretrained=config.pretrained or None, **overrides)
    frozen = freeze_for_finetuning(model, config.finetune, frozen_blocks=None if config.frozen_blocks < 0
                                   else config.frozen_blocks)
    return model, frozen


def compile_trainer(config, model, updates_per_epoch):
    """``model`` (wrapped for accumulation when ``config.accum`` > 1) compiled with the configuration's
    optimizer, warmup-cosine schedule over ``epochs * updates_per_epoch`` updates, loss and XLA choice."""
    schedule = WarmupCosineDecay(
        config.learning_rate, total_steps=config.epochs * updates_per_epoch,
        warmup_steps=int(round(config.warmup_epochs * updates_per_epoch)),
    )
    trainer = GradientAccumulationModel(model, accum=config.accum) if config.accum > 1 else model
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
    saved. The configuration's precision policy holds while the model is built and trained and is put back
    afterwards, also when training fails."""
    run_dir = os.path.join(logdir, config.name)
    result = finished_result(config, run_dir)
    if result is not None:
        if verbose:
            print(f"{config.name}: finished earlier, results read from {os.path.join(run_dir, 'result.json')}")
        return result
    resume_dir = os.path.join(run_dir, "resume")
    saved = resume_epoch(resume_dir)
    if verbose and saved:
        print(f"resuming {config.name} from epoch {saved + 1}/{config.epochs}" if saved < config.epochs else
              f"{config.name}: {epochs_text(saved, config.epochs)}; evaluating it", flush=True)
    try:
        with precision(config.precision):
            result = _train_and_evaluate(config, run_dir, verbose)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as interrupt:  # while the data, the model or the evaluation was being made
        raise TrainingInterrupted(config.name, resume_epoch(resume_dir), config.epochs, training=False) from interrupt
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def _train_and_evaluate(config, run_dir, verbose):
    keras.utils.set_random_seed(config.seed)
    model, frozen = build_model(config)
    data_dir = config.data_dir or None

    def loader(split, **kwargs):
        limit = config.limit_train if split == "train" else config.limit_test
        return tfdata.load(config.dataset, split, config.batch_size, image_size=model.image_size,
                           channels=model.in_channels, seed=config.seed, limit=limit or None, one_hot=True,
                           data_dir=data_dir, **kwargs)

    augment = config.augment or None
    test = loader("test")
    num_train = len(tfdata.load_arrays(config.dataset, "train", limit=config.limit_train or None,
                                       data_dir=data_dir)[1])
    updates_per_epoch = steps_per_epoch(num_train, config.batch_size)
    trainer = compile_trainer(config, model, updates_per_epoch)
    hparams = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("limit_test", "data_dir")}
    hparams["weight_decay"] = float(trainer.optimizer.weight_decay)  # the value used, when the config left the default
    callbacks = standard_callbacks(
        run_dir, monitor="val_accuracy", batch_size=config.batch_size, hparams=hparams,
        early_stopping_patience=config.patience or None,
    )
    started = time.perf_counter()
    fit_resumable(
        trainer, lambda epoch: loader("train", augment=augment, epoch=epoch), config.epochs,
        os.path.join(run_dir, "resume"), updates_per_epoch, callbacks=callbacks, name=config.name,
        validation_data=test, verbose=verbose,
    )
    wall = time.perf_counter() - started
    test_loss, test_accuracy = trainer.evaluate(test, verbose=0)
    history = _history(run_dir)
    stats = tfvit.stats(model)
    return {
        "config": dataclasses.asdict(config),
        "name": config.name,
        "group": config.group,
        "micro_batch": config.micro_batch,
        "train_examples": num_train,
        "steps_per_epoch": updates_per_epoch,
        # Updates applied: fewer than the steps when mixed_float16's loss scaling skipped overflowing ones.
        "updates": int(keras.ops.convert_to_numpy(trainer.optimizer.iterations)),
        "epochs_run": len(history.get("epoch", [])),
        "train_accuracy": history["accuracy"][-1] if history.get("accuracy") else float("nan"),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "best_test_accuracy": max(history.get("val_accuracy", [float("nan")])),
        # Steady state: the epochs that did not trace (see steady_mean); the first epoch on its own.
        "time_per_epoch": steady_mean(history, "epoch_time"),
        "first_epoch_time": first_epoch_time(history),
        "time_per_step": steady_mean(history, "step_time"),
        "images_per_second": steady_mean(history, "images_per_second"),
        "peak_memory_mb": max(history.get("peak_memory_mb", [float("nan")])),
        "wall_time_this_call": wall,
        "params": stats.params,
        "trainable_params": frozen.trainable_params,
        "macs": stats.macs,
        # BatchNorm normalises each micro-batch by itself: the one layer that makes accumulation inexact.
        "batch_norm": any(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers()),
        "history": history,
    }


def epochs_left(config, logdir):
    """Epochs ``config`` still has to train under ``logdir``: 0 when it finished earlier, else its epochs
    less those its resume state holds."""
    run_dir = os.path.join(logdir, config.name)
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
    """``run`` each configuration in turn, announcing it as ``[i/n] <group>: <name>``; returns the results
    in order.

    With ``verbose``, once a run has trained in this call, each announcement ends with an estimate of the
    study's time left: the seconds per epoch measured in this call (the whole time of the runs that
    trained, data, building, compiling and evaluation included, over the epochs they trained) times the
    epochs the runs from this one on still have to train (finished runs none, resumed runs those after
    their saved state). It takes every epoch to cost the same, so it is rough when the runs differ in
    model or data size, and it is an upper bound when early stopping ends runs sooner. A Ctrl-C says
    which run of the study it stopped (``TrainingInterrupted.study``)."""
    configs = list(configs)
    results, seconds, epochs_timed = [], 0.0, 0
    for i, config in enumerate(configs, 1):
        line = f"\n[{i}/{len(configs)}] {config.group}: {config.name}"
        if verbose and epochs_timed:
            left = sum(epochs_left(c, logdir) for c in configs[i - 1:])
            if left:
                line += f" (estimate: about {duration_text(seconds / epochs_timed * left)} left in the study)"
        print(line, flush=True)
        run_dir = os.path.join(logdir, config.name)
        finished = finished_result(config, run_dir) is not None
        saved = resume_epoch(os.path.join(run_dir, "resume"))
        started = time.perf_counter()
        try:
            result = run(config, logdir=logdir, verbose=verbose)
        except TrainingInterrupted as interrupted:
            interrupted.study = (i, len(configs))
            raise
        trained = 0 if finished else int(result.get("epochs_run", config.epochs)) - saved
        if trained > 0:
            seconds += time.perf_counter() - started
            epochs_timed += trained
        results.append(result)
    return results
