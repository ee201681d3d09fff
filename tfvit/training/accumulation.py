"""Exact gradient accumulation over micro-batches, inside one compiled train step.

A batch of B examples is split into micro-batches of m = ceil(B / N) examples (the last one shorter,
zero-padded to m and masked), the gradients of the micro-batch losses are summed, and the optimizer
applies them once. With Keras's default loss reduction (sum over the batch size), the loss of
micro-batch i is L_i = sum_{j in i} w_j l_j / m, so

    grad (1/B) sum_j w_j l_j  =  sum_i (m / B) grad L_i

holds exactly, whether or not N divides B: the applied update equals the full-batch update, up to
float32 rounding of the sum's order. Weight regularisation (a penalty on the weights, not on the
data) is counted once per step, not once per micro-batch. Dropout and stochastic depth draw the same
masks as for the whole batch: each micro-batch runs inside ``keyed_random.example_keyed_draws`` with
the optimizer's update count and the index of its first example in the effective batch (global
across tf.distribute replicas), on which tfvit's stochastic layers key their draws.

The train steps are in ``accumulation_tf.py`` (TensorFlow) and ``accumulation_jax.py`` (the same
computation in Keras's stateless JAX trainer); each backend's is imported when it first trains, so
this module, like ``tfvit.layers`` and ``tfvit.models``, needs no TensorFlow under JAX.

This is the "gradient accumulation" of the GAO study (../shared/seeds/002): done this way it trains
exactly like the large batch B while holding activations for only m examples at a time.
"""

import warnings

import keras

from tfvit import _labels as labels
from tfvit import _validation as check
from tfvit.training import distribution


def _warn_batch_norm(model, accum):
    """Say at construction what the class docstring says: trainable BatchNorm layers (a frozen one runs in
    inference mode) normalise each micro-batch by its own statistics, so accumulation over them is not exact. (Not
    at compile: a Keras model that overrides compile is not compiled again when loaded.)"""
    if accum == 1:
        return
    count = sum(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable  # frozen: inference mode
                for layer in model._flatten_layers(include_self=True, recursive=True))
    if not count:
        return
    warnings.warn(
        f"GradientAccumulationModel(accum={accum}): accumulation over model {model.name!r} is not exact: its "
        f"{count} trainable BatchNormalization layer(s) normalise each micro-batch of ceil(B / {accum}) examples by "
        f"that micro-batch's own mean and variance, so the update differs from the full batch's. For the full-batch "
        f"update use accum=1 with the whole batch, or a model without BatchNorm (LayerNormalization or "
        f"GroupNormalization), or freeze the BatchNorm layers (trainable=False: inference mode).",
        UserWarning, stacklevel=3,
    )


@keras.saving.register_keras_serializable(package="tfvit")
class GradientAccumulationModel(keras.Model):
    """Wrap any Keras model so that each train step accumulates gradients over ``accum`` micro-batches.

    ``compile``, ``fit``, ``evaluate``, ``predict`` and saving work as for the wrapped model, whose
    weights are the ones trained (``wrapper.model`` is the original object). Feed it batches of the
    effective size B; each is split into ``accum`` micro-batches of ceil(B / accum) examples in a
    ``tf.while_loop`` of the compiled step (on JAX, a ``jax.lax.scan`` of the jitted stateless step:
    ``accumulation_jax.py``), not ``accum`` Python calls. Gradients are summed and applied once, so
    ``optimizer.iterations`` counts updates, and under ``tf.distribute`` the all-reduce happens once
    per step. Non-trainable state (BatchNorm moving statistics) updates once per micro-batch, as it
    would with small batches. Metrics see every example once. ``fit`` and ``evaluate`` check the labels
    against the compiled loss and the wrapped model's classes, as tfvit's models do.

    Exactness holds for losses reduced as Keras's default ``"sum_over_batch_size"``, when the model
    treats examples independently (BatchNorm in training mode does not: its batch statistics are
    those of each micro-batch: the wrapper warns when accum > 1 meets a trainable BatchNorm layer)
    and its random layers draw per example (tfvit's ``Dropout`` and
    ``DropPath`` do; ``keras.layers.Dropout`` draws anew for each micro-batch). A ``"sum"`` reduction
    gets the full-batch update times m / B, since each micro-batch loss is weighted by m / B. Under
    mixed_float16, loss scaling skips an update whose gradient overflowed; a micro-batch's float16
    gradient overflows less often than the whole batch's, so the two may skip different updates.
    """

    def __init__(self, model, accum=1, **kwargs):
        if keras.backend.backend() not in ("tensorflow", "jax"):
            raise RuntimeError(
                f"GradientAccumulationModel has train steps for the TensorFlow and JAX backends; the Keras backend "
                f"is {keras.backend.backend()!r}. Use KERAS_BACKEND=tensorflow or jax, or Keras's optimizer-side "
                f"gradient_accumulation_steps on other backends."
            )
        if not isinstance(model, keras.layers.Layer):
            raise ValueError(f"model must be a Keras model, got {type(model).__name__}.")
        if not check.integer(accum) or accum < 1:  # any integer type (numpy's too), not bool
            raise ValueError(f"accum must be a positive integer, got {accum!r} ({type(accum).__name__}).")
        accum = int(accum)
        if model.built and not model.trainable_weights:
            raise ValueError(
                f"model {model.name!r} has no trainable weights: there is no gradient to accumulate."
            )
        kwargs.setdefault("name", f"{model.name}_accumulate{accum}")
        super().__init__(**kwargs)
        self.model = model
        self.accum = accum
        _warn_batch_norm(model, accum)

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's own fails under MultiWorkerMirroredStrategy (distribution.symbolic_build says why).
        if not distribution.symbolic_build(self, iterator, data_batch):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, *args):
        """``train_step(data)`` on TensorFlow; ``train_step(state, data) -> (logs, state)`` on JAX, whose
        stateless step is in ``accumulation_jax.py``."""
        if keras.backend.backend() == "jax":
            from tfvit.training import accumulation_jax  # imports jax: only on that backend

            return accumulation_jax.train_step(self, *args)
        from tfvit.training import accumulation_tf  # imports tensorflow: only on that backend

        return accumulation_tf.train_step(self, *args)

    def fit(self, x=None, y=None, *args, **kwargs):
        with labels.classification_labels(self.loss, labels.output_classes(self.model), f"{self._where()}.fit", y,
                                         kwargs.get("validation_data")):
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        with labels.classification_labels(self.loss, labels.output_classes(self.model), f"{self._where()}.evaluate",
                                         y):
            return super().evaluate(x, y, *args, **kwargs)

    def _where(self):
        return f"{type(self).__name__} '{self.name}' (model {self.model.name!r})"

    def test_step(self, *args):
        logs = super().test_step(*args)
        return logs if keras.backend.backend() == "jax" else distribution.synchronized_logs(self, logs)

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable, "accum": self.accum,
            "model": keras.saving.serialize_keras_object(self.model),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "steps" in config:  # saved before the argument was named accum, like --accum and RunConfig.accum
            config["accum"] = config.pop("steps")
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)
