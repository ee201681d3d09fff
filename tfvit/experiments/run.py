"""One training run of a study, from a plain configuration to a dictionary of measured results.

Wires tfvit's parts in the one direction the design card draws: data -> model -> training ->
callbacks/logs -> result. A run lives in its own directory under the log root (TensorBoard events,
history.csv, best.keras, the resume state, result.json); starting the same configuration again
continues an interrupted run, and returns a finished run's result without training again.
"""

import csv
import dataclasses
import hashlib
import json
import os
import time

import keras
import numpy as np

import tfvit
from tfvit import data as tfdata
from tfvit.training import GradientAccumulationModel
from tfvit.training.callbacks import standard_callbacks
from tfvit.training.finetune import freeze_for_finetuning, layer_decay_multipliers
from tfvit.training.optimizers import build_optimizer
from tfvit.training.device_defaults import resolve as resolve_device_defaults
from tfvit.training.precision import set_precision
from tfvit.training.resume import fit_resumable
from tfvit.training.schedules import WarmupCosineDecay


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. ``batch_size`` is the effective batch (one optimizer update);
    with ``accum`` > 1 it is processed in ``accum`` micro-batches. ``learning_rate`` is the peak rate
    actually used (any batch-size scaling already applied)."""

    dataset: str
    model: str
    batch_size: int
    accum: int = 1
    epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = None  # None: the optimizer's default (AdamW 0.05, SGD 1e-4)
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: str = ""
    dropout: float = 0.0
    drop_path: float = -1.0  # < 0: the registry configuration's own rate
    precision: str = "float32"  # "auto": the device's fastest (tfvit.training.device_defaults)
    jit: bool = False  # None: the device's choice
    seed: int = 0
    limit_train: int = 0   # 0: the whole split
    limit_test: int = 0
    patience: int = 0      # 0: no early stopping
    group: str = ""        # what the run is compared as, e.g. "accumulation" / "baseline"
    image_size: int = 0    # 0: the registry configuration's own; else images are resized to this side
    pretrained: str = ""   # a .safetensors checkpoint to start from ("": random initialisation)
    finetune: str = "full"  # which weights train: "full", "partial" or "head" (tfvit.training.finetune)
    frozen_blocks: int = -1  # "partial": blocks / stages frozen after the stem (< 0: the default, half)
    layer_decay: float = 0.0  # layer-wise learning-rate decay factor (0: none)

    def __post_init__(self):
        # "auto" / None become the concrete choice here, so a run's name and saved config say what ran.
        precision, jit = resolve_device_defaults(self.precision, self.jit)
        object.__setattr__(self, "precision", precision)
        object.__setattr__(self, "jit", jit)

    @property
    def micro_batch(self):
        return -(-self.batch_size // self.accum)

    @property
    def name(self):
        lr = f"{self.learning_rate:.2g}".replace("+", "")
        parts = [self.dataset, self.model, f"b{self.batch_size}", f"acc{self.accum}", f"lr{lr}", f"e{self.epochs}",
                 self.precision, f"s{self.seed}"]
        if self.jit:
            parts.append("xla")
        if self.augment:
            parts.append(self.augment.replace(",", "+"))
        if self.dropout:
            parts.append(f"do{self.dropout:g}")
        if self.drop_path >= 0:
            parts.append(f"dp{self.drop_path:g}")
        if self.limit_train:
            parts.append(f"n{self.limit_train}")
        if self.image_size:
            parts.append(f"px{self.image_size}")
        if self.pretrained:
            parts.append("pretrained")
        if self.finetune != "full":
            parts.append(self.finetune + (f"{self.frozen_blocks}" if self.frozen_blocks >= 0 else ""))
        if self.layer_decay:
            parts.append(f"ld{self.layer_decay:g}")
        # The readable parts leave some settings out; the digest of all of them keeps two configurations
        # from ever sharing a run directory (and so a resume state or a result).
        settings = json.dumps({k: v for k, v in dataclasses.asdict(self).items() if k != "group"}, sort_keys=True)
        parts.append(hashlib.sha1(settings.encode()).hexdigest()[:6])
        return "-".join(parts)


def start_label(pretrained):
    """How a run's weights start: "pretrained (<file>)" or "from scratch"."""
    return f"pretrained ({os.path.basename(pretrained)})" if pretrained else "from scratch"


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


def run(config, logdir="logs", verbose=1):
    """Train and evaluate ``config``; return its result dictionary (also saved as result.json)."""
    run_dir = os.path.join(logdir, config.name)
    result_path = os.path.join(run_dir, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if result.get("config") == dataclasses.asdict(config):
            if verbose:
                print(f"{config.name}: finished earlier, results read from {result_path}")
            return result

    set_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    overrides = {"dropout": config.dropout} if config.dropout else {}
    if config.drop_path >= 0:
        overrides["drop_path_rate"] = config.drop_path
    info = tfdata.dataset_info(config.dataset)
    model = tfvit.create_model(config.model, num_classes=info.num_classes, image_size=config.image_size or None,
                               pretrained=config.pretrained or None, **overrides)
    frozen = freeze_for_finetuning(model, config.finetune, frozen_blocks=None if config.frozen_blocks < 0
                                   else config.frozen_blocks)
    image_size, channels = model.image_size, model.in_channels

    def loader(split, **kwargs):
        limit = config.limit_train if split == "train" else config.limit_test
        return tfdata.load(config.dataset, split, config.batch_size, image_size=image_size, channels=channels,
                           seed=config.seed, limit=limit or None, one_hot=True, **kwargs)

    augment = config.augment or None
    test = loader("test")
    steps_per_epoch = int(loader("train", augment=augment).cardinality())
    num_train = len(tfdata.load_arrays(config.dataset, "train", limit=config.limit_train or None)[1])

    schedule = WarmupCosineDecay(
        config.learning_rate, total_steps=config.epochs * steps_per_epoch,
        warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)),
    )
    trainer = GradientAccumulationModel(model, steps=config.accum) if config.accum > 1 else model
    multipliers = layer_decay_multipliers(model, config.layer_decay) if config.layer_decay else None
    optimizer = build_optimizer(config.optimizer, schedule, weight_decay=config.weight_decay,
                                lr_multipliers=multipliers)
    trainer.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=["accuracy"], jit_compile=config.jit,
    )
    hparams = {k: v for k, v in dataclasses.asdict(config).items() if k != "limit_test"}
    hparams["weight_decay"] = float(optimizer.weight_decay)  # the value used, when the config left the default
    callbacks = standard_callbacks(
        run_dir, monitor="val_accuracy", batch_size=config.batch_size, hparams=hparams,
        early_stopping_patience=config.patience or None,
    )
    started = time.perf_counter()
    fit_resumable(
        trainer, lambda epoch: loader("train", augment=augment, epoch=epoch), config.epochs,
        os.path.join(run_dir, "resume"), steps_per_epoch, callbacks=callbacks,
        validation_data=test, verbose=verbose,
    )
    wall = time.perf_counter() - started
    test_loss, test_accuracy = trainer.evaluate(test, verbose=0)
    history = _history(run_dir)
    stats = tfvit.stats(model)
    result = {
        "config": dataclasses.asdict(config),
        "name": config.name,
        "group": config.group,
        "micro_batch": config.micro_batch,
        "train_examples": num_train,
        "steps_per_epoch": steps_per_epoch,
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
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    set_precision("float32")
    return result


def run_all(configs, logdir, verbose=1):
    """``run`` each configuration in turn, announcing it; returns the results in order."""
    results = []
    for i, config in enumerate(configs, 1):
        print(f"\n[{i}/{len(configs)}] {config.group}: {config.name}", flush=True)
        results.append(run(config, logdir=logdir, verbose=verbose))
    return results
