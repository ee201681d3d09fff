"""GradientAccumulationModel's train step on the JAX backend: the same exact accumulation as the
TensorFlow step in ``accumulation.py``, written the way Keras's JAX trainer writes its own step.

Keras on JAX is stateless: it calls ``train_step(state, data)`` with

    state = (trainable, non_trainable, optimizer_variables, metrics_variables)

(lists of arrays, not variables) and takes back ``(logs, new_state)``; the step is jitted once per
batch shape, so the batch size B is a Python int while tracing and every shape below is static.

The batch is cut exactly as on TensorFlow: N = ``accum``, m = ceil(B / N) examples per micro-batch,
n = ceil(B / m) <= N micro-batches, the batch zero-padded to n m rows. Every example gets the weight
w_j (its sample weight, or 1), padding the weight 0. With Keras's default loss reduction
("sum_over_batch_size" divides by the micro-batch's size m, whatever the weights), micro-batch i has
the loss L_i = sum_{j in i} w_j l_j / m, so

    grad (1/B) sum_j w_j l_j  =  sum_i (m / B) grad L_i.

``jax.lax.scan`` runs the n micro-batches one after another inside the compiled step (one trace of
the model, not n Python calls), each through ``compute_loss_and_updates`` (Keras's stateless forward
pass plus ``stateless_compute_loss``, loss scaling included) under ``jax.value_and_grad``. The carry
holds the gradient sum, the non-trainable values (BatchNorm statistics and RNG seeds move on once per
micro-batch, as they would with small batches), the metric values and the loss sum.
``optimizer.stateless_apply`` then applies the summed gradient once, so ``optimizer.iterations``
counts updates. Micro-batch i runs inside ``keyed_random.example_keyed_draws(t, i m, m)``, t the
update count, so tfvit's dropout and stochastic depth draw the masks of the whole batch.

Weight regularisation R(w) is part of every L_i, so the loop counts it n m / B >= 1 times; a last
gradient of -(n m / B - 1) R(w) takes the excess back (nothing to do when N divides B). The metrics
and the loss tracker are updated once, after the loop, with the B real predictions.
"""

import jax
import jax.numpy as jnp
import keras

from tfvit.layers import keyed_random
from tfvit.training.micro_batches import micro_batch_layout


def _leading_dim(structure):
    return next(t for t in jax.tree_util.tree_leaves(structure)).shape[0]


def _to_micro_batches(structure, padded, micro):
    """Zero-pad every array of ``structure`` along axis 0 to ``padded`` rows and reshape it to
    (padded / micro, micro, ...), the layout ``lax.scan`` walks over."""

    def split(t):
        t = jnp.asarray(t)
        t = jnp.pad(t, [(0, padded - t.shape[0])] + [(0, 0)] * (t.ndim - 1))
        return t.reshape((padded // micro, micro, *t.shape[1:]))

    return jax.tree_util.tree_map(split, structure)  # None (no y) stays None


def _micro_batch_weights(batch, padded, sample_weight):
    """1 (or the sample weight) for each real example, 0 for the padding: shape (padded, ...)."""
    weights = (jnp.arange(padded) < batch).astype("float32")
    if sample_weight is None:
        return weights
    sample_weight = jnp.asarray(sample_weight, "float32")
    sample_weight = jnp.pad(sample_weight, [(0, padded - batch)] + [(0, 0)] * (sample_weight.ndim - 1))
    return weights.reshape((padded,) + (1,) * (sample_weight.ndim - 1)) * sample_weight


def _scaled(model, optimizer_variables, loss):
    """``optimizer.scale_loss`` (a LossScaleOptimizer's dynamic scale) on the step's optimizer state."""
    with keras.StatelessScope(state_mapping=list(zip(model.optimizer.variables, optimizer_variables))):
        return model.optimizer.scale_loss(loss)


def train_step(model, state, data):
    """One update of ``model`` (a GradientAccumulationModel) from one batch of the effective size B."""
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    if not trainable:
        raise ValueError(f"model {model.model.name!r} has no trainable weights: nothing to train.")
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

    batch = _leading_dim(x)
    micro, count, padded = micro_batch_layout(batch, model.accum)
    weights = _micro_batch_weights(batch, padded, sample_weight)
    micro_batches = (
        _to_micro_batches(x, padded, micro),
        _to_micro_batches(y, padded, micro),
        weights.reshape((count, micro, *weights.shape[1:])),
    )
    share = micro / batch  # m / B
    update = keyed_random.optimizer_update(model.optimizer, optimizer_variables)

    def micro_loss(trainable, non_trainable, metrics_variables, x_i, y_i, w_i):
        scaled, (loss, y_pred, non_trainable, metrics_variables) = model.compute_loss_and_updates(
            trainable, non_trainable, metrics_variables, x_i, y_i, w_i,
            training=True, optimizer_variables=optimizer_variables,
        )
        loss = jnp.asarray(loss, "float32") * share
        return jnp.asarray(scaled, "float32") * share, (loss, y_pred, non_trainable, metrics_variables)

    gradient_of = jax.value_and_grad(micro_loss, has_aux=True)

    def body(carry, indexed_micro_batch):
        gradients, non_trainable, metrics_variables, loss_sum = carry
        index, micro_batch = indexed_micro_batch
        with keyed_random.example_keyed_draws(update, index * micro, micro):
            (_, (loss, y_pred, non_trainable, metrics_variables)), grads = gradient_of(
                trainable, non_trainable, metrics_variables, *micro_batch
            )
        gradients = jax.tree_util.tree_map(jnp.add, gradients, grads)
        # Predictions go out of the loop (as float32, as on TensorFlow) for the metrics' single update.
        y_pred = jax.tree_util.tree_map(lambda p: jnp.asarray(p, "float32"), y_pred)
        return (gradients, non_trainable, metrics_variables, loss_sum + loss), y_pred

    zeros = [jnp.zeros_like(v) for v in trainable]
    carry = (zeros, list(non_trainable), list(metrics_variables), jnp.zeros((), "float32"))
    (gradients, non_trainable, metrics_variables, loss_sum), predictions = jax.lax.scan(
        body, carry, (jnp.arange(count, dtype="int32"), micro_batches)
    )
    y_pred = jax.tree_util.tree_map(lambda p: p.reshape((padded, *p.shape[2:]))[:batch], predictions)

    # The loop counted the weight penalty count * m / B times; take the excess back once.
    excess = padded / batch - 1.0
    regularized = [(i, v.regularizer) for i, v in enumerate(model.trainable_variables) if v.regularizer is not None]
    if regularized and excess:

        def correction_loss(trainable):
            penalty = sum(jnp.sum(jnp.asarray(reg(trainable[i]), "float32")) for i, reg in regularized)
            correction = -excess * penalty
            return _scaled(model, optimizer_variables, correction), correction

        (_, correction), grads = jax.value_and_grad(correction_loss, has_aux=True)(trainable)
        gradients = jax.tree_util.tree_map(jnp.add, gradients, grads)
        loss_sum = loss_sum + correction

    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, gradients, trainable)

    # Metrics and the loss tracker see the B real examples once, as without accumulation.
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        model._loss_tracker.update_state(loss_sum, sample_weight=batch)
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_variables = [
        value if (new := scope.get_current_value(ref)) is None else new for ref, value in mapping
    ]
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)
