"""Learning-rate schedules and batch-size scaling rules, counted in optimizer updates.

Keras evaluates a ``LearningRateSchedule`` at the optimizer's step counter before every update. With
``tfvit.training.GradientAccumulationModel`` that counter (``optimizer.iterations``) counts updates,
one per batch however many micro-batches the batch is split into, so every length here (warmup,
total) is a number of updates, and ``steps_per_epoch`` gives the updates of an epoch.
"""

import math
import numbers

import keras
from keras import ops

from tfvit import _validation as check


def _non_negative_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def _learning_rate(name, value, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        expected = "a finite float >= 0" if allow_zero else "a finite float > 0"
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="tfvit")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to a peak, then half a cosine down to a floor (Loshchilov & Hutter 2017, SGDR).

    With peak p, floor f, warmup W and total T (in optimizer updates), the rate of update s = 0, 1, ... is

        s < W:        p * (s + 1) / W
        W <= s <= T:  f + (p - f) * (1 + cos(pi * (s - W) / (T - W))) / 2
        s >= T:       f

    The warmup starts at p / W rather than 0 (timm and DeiT style): an update with rate 0 would be a
    wasted step. It reaches p at s = W - 1, the cosine starts at p at s = W, and the rate is f from
    s = T on. Without warmup (W = 0) this is plain cosine decay from p.
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0, min_learning_rate=0.0, name=None):
        self.peak_learning_rate = _learning_rate("peak_learning_rate", peak_learning_rate)
        self.total_steps = check.positive_int("total_steps", total_steps)
        self.warmup_steps = _non_negative_int("warmup_steps", warmup_steps)
        self.min_learning_rate = _learning_rate("min_learning_rate", min_learning_rate, allow_zero=True)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps={warmup_steps} exceeds total_steps={total_steps}: the warmup is part of "
                f"the schedule's total length."
            )
        if self.min_learning_rate > self.peak_learning_rate:
            raise ValueError(
                f"min_learning_rate={min_learning_rate} exceeds peak_learning_rate={peak_learning_rate}: "
                f"the cosine decays from the peak down to the minimum."
            )
        self.name = name

    def __call__(self, step):
        # float32 counts steps exactly up to 2**24 (16.7M updates), far beyond any training run here.
        step = ops.cast(step, "float32")
        peak, floor = self.peak_learning_rate, self.min_learning_rate
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps > 0:
            progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            rate = floor + (peak - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:  # all warmup: after it, the floor
            rate = ops.full_like(step, floor)
        if self.warmup_steps > 0:
            warmup = peak * (step + 1.0) / self.warmup_steps
            rate = ops.where(step < self.warmup_steps, warmup, rate)
        return rate

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_learning_rate": self.min_learning_rate,
            "name": self.name,
        }


_SCALINGS = ("none", "linear", "sqrt")


def scaled_learning_rate(base_learning_rate, batch_size, base_batch_size, scaling="linear"):
    """Scale a learning rate tuned at ``base_batch_size`` to ``batch_size``.

    ``"linear"``: lr = base * B / B0, the linear scaling rule (Goyal et al. 2017, "Accurate, Large
    Minibatch SGD"), used with warmup by DeiT (lr = 5e-4 * B / 512) and Swin.
    ``"sqrt"``: lr = base * sqrt(B / B0), which keeps the gradient noise variance constant
    (Krizhevsky 2014, "One weird trick"; Hoffer et al. 2017, "Train longer, generalize better").
    ``"none"``: lr = base.

    With gradient accumulation, B is the effective batch: micro-batch size times accumulation steps.
    """
    base = _learning_rate("base_learning_rate", base_learning_rate)
    batch = check.positive_int("batch_size", batch_size)
    reference = check.positive_int("base_batch_size", base_batch_size)
    if scaling == "linear":
        return base * batch / reference
    if scaling == "sqrt":
        return base * math.sqrt(batch / reference)
    if scaling == "none":
        return base
    raise ValueError(f"scaling must be one of {', '.join(map(repr, _SCALINGS))}, got {scaling!r}.")


def steps_per_epoch(num_examples, batch_size, drop_remainder=False):
    """Batches (hence updates) per epoch: ceil(n / B), or floor(n / B) when the last short batch is dropped."""
    n = check.positive_int("num_examples", num_examples)
    batch = check.positive_int("batch_size", batch_size)
    steps = n // batch if drop_remainder else -(-n // batch)
    if steps == 0:
        raise ValueError(
            f"num_examples={num_examples} is smaller than batch_size={batch_size} with drop_remainder=True: "
            f"an epoch would have no batch."
        )
    return steps
