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

The TensorFlow train step is below; the JAX one, the same computation in Keras's stateless JAX
trainer, is in ``accumulation_jax.py``.

This is the "gradient accumulation" of the GAO study (../shared/seeds/002): done this way it trains
exactly like the large batch B while holding activations for only m examples at a time.
"""

import keras
import tensorflow as tf

from tfvit import _validation as check
from tfvit.layers import keyed_random
from tfvit.training.micro_batches import micro_batch_layout


def _leading_dim(structure):
    leaves = [t for t in keras.tree.flatten(structure) if t is not None]
    return tf.shape(leaves[0])[0]


def _to_micro_batches(structure, padded, micro):
    """Zero-pad every tensor of ``structure`` along axis 0 to ``padded`` rows, then reshape to
    (padded / micro, micro, ...). Static micro-batch shapes keep the loop XLA-compilable."""

    def split(t):
        if t is None:
            return None
        t = tf.convert_to_tensor(t)
        pad = [[0, padded - tf.shape(t)[0]]] + [[0, 0]] * (t.shape.rank - 1)
        t = tf.pad(t, pad)
        return tf.reshape(t, tf.concat([[padded // micro, micro], tf.shape(t)[1:]], axis=0))

    return None if structure is None else keras.tree.map_structure(split, structure)


def _dense(gradient, variable):
    if gradient is None:
        return tf.zeros_like(variable)
    return tf.convert_to_tensor(gradient)  # IndexedSlices (from gathers) accumulate as dense tensors


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

    def _weight_regularization(self):
        penalties = [v.regularizer(v) for v in self.trainable_weights if v.regularizer is not None]
        return tf.add_n([tf.cast(p, tf.float32) for p in penalties]) if penalties else None

    def train_step(self, *args):
        """``train_step(data)`` on TensorFlow; ``train_step(state, data) -> (logs, state)`` on JAX, whose
        stateless step is in ``accumulation_jax.py``."""
        if keras.backend.backend() == "jax":
            from tfvit.training import accumulation_jax  # imports jax: only on that backend

            return accumulation_jax.train_step(self, *args)
        return self._tensorflow_train_step(*args)

    def _tensorflow_train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_weights
        if not variables:
            raise ValueError(f"model {self.model.name!r} has no trainable weights: nothing to train.")

        batch = _leading_dim(x)
        micro, count, padded = micro_batch_layout(batch, self.accum)
        # Real examples weigh 1 (or their sample weight), padding weighs 0.
        weights = tf.sequence_mask(batch, padded, dtype=tf.float32)
        if sample_weight is not None:
            weights *= tf.pad(tf.cast(sample_weight, tf.float32), [[0, padded - batch]])
        xs, ys = _to_micro_batches(x, padded, micro), _to_micro_batches(y, padded, micro)
        ws = tf.reshape(weights, (count, micro))
        share = tf.cast(micro, tf.float32) / tf.cast(batch, tf.float32)  # m / B
        update = keyed_random.optimizer_update(self.optimizer)  # read before the update is applied
        first = keyed_random.replica_first_example(batch)

        # Predictions are kept (as float32) so the metrics see the real examples of the batch once,
        # in one update after the loop, exactly as without accumulation.
        output_spec = self.compute_output_spec(
            keras.tree.map_structure(lambda t: keras.KerasTensor(t.shape[1:], dtype=t.dtype), xs), training=True
        )
        prediction_spec = keras.tree.flatten(output_spec)
        predictions = [tf.TensorArray(tf.float32, size=count, element_shape=p.shape) for p in prediction_spec]

        def body(i, loss_sum, accumulated, predictions):
            take = lambda t: None if t is None else t[i]
            x_i, y_i, w_i = keras.tree.map_structure(take, xs), None, ws[i]
            if ys is not None:
                y_i = keras.tree.map_structure(take, ys)
            with tf.GradientTape() as tape, keyed_random.example_keyed_draws(update, first + i * micro, micro):
                y_pred = self(x_i, training=True)
                loss = self.compute_loss(x=x_i, y=y_i, y_pred=y_pred, sample_weight=w_i, training=True)
                loss = tf.cast(loss, tf.float32) * share
                scaled = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, variables)
            accumulated = [a + _dense(g, v) for a, g, v in zip(accumulated, gradients, variables)]
            predictions = [ta.write(i, tf.cast(p, tf.float32)) for ta, p in zip(predictions, keras.tree.flatten(y_pred))]
            return i + 1, loss_sum + loss, accumulated, predictions

        zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
        _, loss_sum, gradients, predictions = tf.while_loop(
            lambda i, *_: i < count, body, (tf.constant(0), tf.constant(0.0), zeros, predictions),
            parallel_iterations=1,  # micro-batches run one after another: that is the memory saving
        )
        y_pred = keras.tree.pack_sequence_as(output_spec, [
            tf.reshape(ta.stack(), tf.concat([[padded], tf.shape(ta.stack())[2:]], axis=0))[:batch]
            for ta in predictions
        ])

        # Each micro-batch loss carried the weight penalty with weight m/B; together count*m/B >= 1.
        # Take back the excess so the penalty counts exactly once (nothing to do when N divides B).
        excess = tf.cast(padded, tf.float32) / tf.cast(batch, tf.float32) - 1.0
        if any(v.regularizer is not None for v in variables):
            with tf.GradientTape() as tape:
                penalty = self._weight_regularization()
                correction = -excess * penalty
                scaled = self.optimizer.scale_loss(correction)
            gradients = [g + _dense(c, v) for g, c, v in zip(gradients, tape.gradient(scaled, variables), variables)]
            loss_sum += correction

        self.optimizer.apply_gradients(zip(gradients, variables))
        # Keras scales the loss down by the number of replicas for the all-reduce sum; report it unscaled.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self._loss_tracker.update_state(loss_sum * replicas, sample_weight=batch)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

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
