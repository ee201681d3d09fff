"""Training: exact gradient accumulation, optimizers and schedules, precision, callbacks, resume, distribution.

Each name loads its module on first use (PEP 562), so ``from tfvit.training import GradientAccumulationModel``
needs no TensorFlow under ``KERAS_BACKEND=jax``; the callbacks write TensorBoard files with it.
"""

import importlib

# The function shares its module's name: bound now, or importing the module would put the module in its place.
from tfvit.training.precision import precision, set_precision  # noqa: F401 (Keras only)

# Public name -> the module that defines it.
_NAMES = {
    "GradientAccumulationModel": "accumulation",
    "StepScalars": "callbacks", "TrainingSpeed": "callbacks", "log_hparams": "callbacks",
    "standard_callbacks": "callbacks",
    "TrainingDefaults": "device_defaults", "training_defaults": "device_defaults",
    "replica_batches": "distribution", "strategy_for": "distribution",
    "FinetuneSummary": "finetune", "freeze_for_finetuning": "finetune", "layer_decay_multipliers": "finetune",
    "layer_ids": "finetune",
    "NonFiniteLoss": "finite_loss", "StopOnNonFiniteLoss": "finite_loss",
    "micro_batch_layout": "micro_batches", "micro_batch_size": "micro_batches",
    "DEFAULT_NO_DECAY": "optimizers", "build_optimizer": "optimizers",
    "ResumableTraining": "resume", "TrainingInterrupted": "resume", "fit_resumable": "resume",
    "resume_epoch": "resume",
    "WarmupCosineDecay": "schedules", "scaled_learning_rate": "schedules", "steps_per_epoch": "schedules",
}
__all__ = sorted([*_NAMES, "precision", "set_precision"])


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"tfvit.training.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfvit.training' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
