"""Training: exact gradient accumulation, optimizers and schedules, precision, callbacks."""

from tfvit.training.accumulation import GradientAccumulationModel

__all__ = ["GradientAccumulationModel"]
