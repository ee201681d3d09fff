"""``StopOnNonFiniteLoss``: end training at the first batch whose loss is NaN or infinite.

A diverged run otherwise trains to its last epoch on NaN weights and saves them. The callback reads the
batch logs' ``loss`` in ``on_train_batch_end`` (Keras's running mean of the epoch, which turns non-finite
with the first non-finite batch and stays so) and raises ``NonFiniteLoss`` there, inside the epoch: the
end-of-epoch callbacks (the resume state of ``tfvit.training.resume``, ModelCheckpoint's best.keras, the
history) never run with the diverged weights, so what the last finished epoch saved is what is kept.
It works for any Keras model, ``GradientAccumulationModel`` included (its loss is in the same logs).
"""

import math

import keras

__all__ = ["NonFiniteLoss", "StopOnNonFiniteLoss"]


class NonFiniteLoss(ArithmeticError):
    """Training stopped at a batch whose loss is NaN or infinite. ``epoch`` and ``step`` are 1-based (``epochs``
    and ``steps`` their totals, None when unknown), ``loss`` the value, ``learning_rate`` the optimizer's rate
    then (None when it has none to read). ``name``: the run, when a caller that knows it sets it (None: not
    named); ``study``: (i, n) when the run was the i-th of a study of n runs. ``str()`` is the one paragraph
    to show."""

    def __init__(self, loss, epoch, epochs=None, step=None, steps=None, learning_rate=None, float16=False):
        # The arguments as given: what unpickling rebuilds the exception from.
        super().__init__(loss, epoch, epochs, step, steps, learning_rate, float16)
        self.loss, self.epoch, self.epochs, self.step, self.steps = float(loss), int(epoch), epochs, step, steps
        self.learning_rate, self.float16 = learning_rate, float16
        self.name, self.study = None, None

    def __str__(self):
        where = f"epoch {self.epoch}" + (f"/{self.epochs}" if self.epochs else "")
        if self.step is not None:
            where += f", step {self.step}" + (f"/{self.steps}" if self.steps else "")
        if self.name:
            where += f" of {self.name}"
            if self.study and self.study[1] > 1:
                where += f" (run {self.study[0]}/{self.study[1]} of the study)"
        rate = f" (now {self.learning_rate:.3g})" if self.learning_rate is not None else ""
        float16 = (" (this model computes in float16 and its optimizer does not scale the loss)" if self.float16
                   else "")
        if self.epoch > 1:
            kept = (f"What was saved at the end of epoch {self.epoch - 1}, the last finished one, is kept; nothing "
                    f"of epoch {self.epoch} was saved")
        else:
            kept = "No epoch had finished: nothing of this run was saved"
        return (f"the training loss is {_number(self.loss)} at {where}: the run diverged and was stopped. Likely "
                f"causes: a learning rate{rate} too high for the batch size (lower it, or warm up longer); float16 "
                f"overflow under mixed_float16 without loss scaling{float16}; or bad input data (NaN or infinite "
                f"values). {kept}.")


def _number(value):
    return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)


def _learning_rate(optimizer):
    """The optimizer's current learning rate as a float, or None when it cannot be read."""
    try:
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):  # no optimizer, or a rate that is not one number
        return None
    return rate if math.isfinite(rate) else None


def _float16_without_scaling(model):
    policy = getattr(model, "dtype_policy", None)
    compute = getattr(policy, "compute_dtype", None)
    optimizer = getattr(model, "optimizer", None)
    return compute == "float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise ``NonFiniteLoss`` at the first training batch whose logged ``loss`` is NaN or infinite.

    Put it first in the callback list: the callbacks after it then never see that batch's logs. Raising (not
    ``model.stop_training``) keeps the epoch from ending, so no end-of-epoch save writes the diverged weights.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        try:
            loss = float(loss)
        except (TypeError, ValueError):  # not one number (a per-output loss structure): nothing to judge
            return
        if math.isfinite(loss):
            return
        params = self.params or {}
        model = self.model
        raise NonFiniteLoss(
            loss, self._epoch + 1, epochs=params.get("epochs"), step=batch + 1, steps=params.get("steps"),
            learning_rate=_learning_rate(getattr(model, "optimizer", None)),
            float16=model is not None and _float16_without_scaling(model),
        )
