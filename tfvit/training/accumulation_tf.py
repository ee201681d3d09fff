"""GradientAccumulationModel's train step on the TensorFlow backend (the JAX one is ``accumulation_jax.py``).

One compiled step takes a batch of the effective size, cuts it into micro-batches exactly as
``accumulation.py`` describes and sums their gradients in a ``tf.while_loop``, then applies them once.

Under ``tf.distribute`` each of the R replicas runs this step on its slice of b_r examples of the
global batch B = sum_r b_r, Keras divides every loss by R (``scale_loss_for_distribution``) and the
gradients are summed across replicas once, after the loop. Weighting replica r's micro-batch i by
m_r R / B (not m_r / b_r) makes the sum

    sum_r sum_i (m_r R / B) (1 / R) grad L_i  =  grad (1/B) sum_j w_j l_j,

the gradient of the global batch, also when the replicas' slices differ in size (a short last
batch); with equal slices m_r R / B = m_r / b_r. B is one all-reduce of the slice sizes per step.
"""

import keras
import tensorflow as tf

from tfvit.layers import keyed_random
from tfvit.training import distribution
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


def _weight_regularization(model):
    penalties = [v.regularizer(v) for v in model.trainable_weights if v.regularizer is not None]
    return tf.add_n([tf.cast(p, tf.float32) for p in penalties]) if penalties else None


def train_step(model, data):
    """One update of ``model`` (a GradientAccumulationModel) from this replica's part of one batch."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_weights
    if not variables:
        raise ValueError(f"model {model.model.name!r} has no trainable weights: nothing to train.")

    batch = _leading_dim(x)
    # A replica can get no example of a short last batch; it then runs one all-padding micro-batch.
    micro, count, padded = micro_batch_layout(tf.maximum(batch, 1), model.accum)
    # Real examples weigh 1 (or their sample weight), padding weighs 0.
    weights = tf.sequence_mask(batch, padded, dtype=tf.float32)
    if sample_weight is not None:
        weights *= tf.pad(tf.cast(sample_weight, tf.float32), [[0, padded - batch]])
    xs, ys = _to_micro_batches(x, padded, micro), _to_micro_batches(y, padded, micro)
    ws = tf.reshape(weights, (count, micro))
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    first, total = keyed_random.replica_slice(batch)
    total = tf.cast(total, tf.float32)
    share = tf.cast(micro * replicas, tf.float32) / total  # m R / B (the module's docstring); m / B on one device
    update = keyed_random.optimizer_update(model.optimizer)  # read before the update is applied

    # Predictions are kept (as float32) so the metrics see the real examples of the batch once,
    # in one update after the loop, exactly as without accumulation.
    output_spec = model.compute_output_spec(
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
            y_pred = model(x_i, training=True)
            loss = model.compute_loss(x=x_i, y=y_i, y_pred=y_pred, sample_weight=w_i, training=True)
            loss = tf.cast(loss, tf.float32) * share
            scaled = model.optimizer.scale_loss(loss)
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

    # Each micro-batch loss carried the weight penalty (divided by R) with weight m R / B: over the
    # replicas sum_r padded_r / B >= 1 times. Each replica takes back padded_r / B - 1 / R of it, so the
    # penalty counts exactly once (nothing to do when N divides every slice).
    excess = tf.cast(padded, tf.float32) / total - 1.0 / replicas
    if any(v.regularizer is not None for v in variables):
        with tf.GradientTape() as tape:
            correction = -excess * _weight_regularization(model)
            scaled = model.optimizer.scale_loss(correction)
        gradients = [g + _dense(c, v) for g, c, v in zip(gradients, tape.gradient(scaled, variables), variables)]
        loss_sum += correction  # over the replicas the reported penalty then also sums to one

    model.optimizer.apply_gradients(zip(gradients, variables))
    # loss_sum = sum over this replica's examples of w l / B (Keras's 1 / R included in each loss). The loss
    # tracker's Mean sums value x weight over the replicas: this replica's mean loss with weight b_r gives
    # the global mean.
    mean = tf.math.divide_no_nan(loss_sum * total, tf.cast(batch, tf.float32))
    model._loss_tracker.update_state(mean, sample_weight=batch)
    return distribution.synchronized_logs(model, model.compute_metrics(x, y, y_pred, sample_weight=sample_weight))
