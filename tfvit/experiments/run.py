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
from tfvit.training.resume import fit_resumable
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


def _mean_after_first(values):
    """Mean per-epoch figure, leaving out the first epoch (tracing and XLA compilation) when there are more."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return float("nan")
    return float(np.mean(values[1:] if len(values) > 1 else values))


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

    The configuration's precision policy holds while the model is built and trained and is put back
    afterwards, also when training fails."""
    run_dir = os.path.join(logdir, config.name)
    result = finished_result(config, run_dir)
    if result is not None:
        if verbose:
            print(f"{config.name}: finished earlier, results read from {os.path.join(run_dir, 'result.json')}")
        return result
    with precision(config.precision):
        result = _train_and_evaluate(config, run_dir, verbose)
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
        os.path.join(run_dir, "resume"), updates_per_epoch, callbacks=callbacks,
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
        "time_per_epoch": _mean_after_first(history.get("epoch_time", [])),
        "time_per_step": _mean_after_first(history.get("step_time", [])),
        "images_per_second": _mean_after_first(history.get("images_per_second", [])),
        "peak_memory_mb": max(history.get("peak_memory_mb", [float("nan")])),
        "wall_time_this_call": wall,
        "params": stats.params,
        "trainable_params": frozen.trainable_params,
        "macs": stats.macs,
        # BatchNorm normalises each micro-batch by itself: the one layer that makes accumulation inexact.
        "batch_norm": any(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers()),
        "history": history,
    }


def run_all(configs, logdir, verbose=1):
    """``run`` each configuration in turn, announcing it; returns the results in order."""
    results = []
    for i, config in enumerate(configs, 1):
        print(f"\n[{i}/{len(configs)}] {config.group}: {config.name}", flush=True)
        results.append(run(config, logdir=logdir, verbose=verbose))
    return results
