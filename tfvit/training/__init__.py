"""Training: exact gradient accumulation, optimizers and schedules, precision, callbacks, resume."""

from tfvit.training.accumulation import GradientAccumulationModel
from tfvit.training.callbacks import StepScalars, TrainingSpeed, log_hparams, standard_callbacks
from tfvit.training.device_defaults import TrainingDefaults, training_defaults
from tfvit.training.finetune import FinetuneSummary, freeze_for_finetuning, layer_decay_multipliers, layer_ids
from tfvit.training.finite_loss import NonFiniteLoss, StopOnNonFiniteLoss
from tfvit.training.micro_batches import micro_batch_layout, micro_batch_size
from tfvit.training.optimizers import DEFAULT_NO_DECAY, build_optimizer
from tfvit.training.precision import precision, set_precision
from tfvit.training.resume import ResumableTraining, TrainingInterrupted, fit_resumable, resume_epoch
from tfvit.training.schedules import WarmupCosineDecay, scaled_learning_rate, steps_per_epoch

__all__ = [
    "DEFAULT_NO_DECAY", "FinetuneSummary", "GradientAccumulationModel", "NonFiniteLoss", "ResumableTraining",
    "StepScalars", "StopOnNonFiniteLoss", "TrainingDefaults", "TrainingInterrupted", "TrainingSpeed",
    "WarmupCosineDecay", "build_optimizer", "fit_resumable", "freeze_for_finetuning", "layer_decay_multipliers",
    "layer_ids", "log_hparams", "micro_batch_layout", "micro_batch_size", "precision", "resume_epoch",
    "scaled_learning_rate", "set_precision", "standard_callbacks", "steps_per_epoch", "training_defaults",
]
