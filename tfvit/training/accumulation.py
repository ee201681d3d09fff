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

import keras

from tfvit import _validation as check
from tfvit.training import distribution


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
    would with small batches. Metrics see every example once.

    Exactness holds for losses reduced as Keras's default ``"sum_over_batch_size"``, when the model
    treats examples independently (BatchNorm in training mode does not: its batch statistics are
    those of each micro-batch) and its random layers draw per example (tfvit's ``Dropout`` and
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
