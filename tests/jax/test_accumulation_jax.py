"""GradientAccumulationModel's JAX train step against independent references: the full-batch gradient
from ``jax.grad`` of the model's stateless forward pass with a hand-written loss (with and without jit, with
sample weights, a weight penalty and mixed precision). The backend-neutral references (Keras's own
optimizer-side accumulation, hand-computed BatchNorm statistics, metrics and loss, save/load) are
tests/accumulation_cases.py's, imported below and collected here."""

from tests.jax import require_jax_backend

require_jax_backend()

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from tfvit.training import GradientAccumulationModel

from tests.accumulation_cases import (
    LOSS, applied_update, assert_all_close, check_dropout_accumulation, check_mixed_precision_accumulation, data,
    keyed, mlp, stochastic_model, tiny_swin,
)
# The backend-neutral tests (the module's __all__), shared with tests/training/test_accumulation.py:
# pytest collects them here.
from tests.accumulation_cases import *  # noqa: F401,F403


def full_batch_gradient(model, x, y, sample_weight=None, l2=0.0):
    """d/dw of (1/B) sum_j w_j CE(y_j, f(x_j)) + l2 sum ||kernel||^2, by jax.grad of the model's
    stateless call: no Keras loss, trainer or wrapper involved."""
    non_trainable = [v.value for v in model.non_trainable_variables]
    weights = jnp.ones(len(x)) if sample_weight is None else jnp.asarray(sample_weight, "float32")
    kernels = [v.path.endswith("kernel") for v in model.trainable_variables]

    def loss(trainable):
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        cross_entropy = -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(y)[:, None], axis=1)[:, 0]
        penalty = sum(jnp.sum(t ** 2) for t, is_kernel in zip(trainable, kernels) if is_kernel)
        return jnp.sum(weights * cross_entropy) / len(x) + l2 * penalty

    return [np.asarray(g) for g in jax.jit(jax.grad(loss))([v.value for v in model.trainable_variables])]


def test_the_step_runs_on_the_jax_backend():
    assert keras.backend.backend() == "jax"
    wrapper = GradientAccumulationModel(mlp(), accum=2)  # raised on every backend but TensorFlow before
    wrapper.compile(optimizer="sgd", loss=LOSS)
    assert wrapper.jit_compile  # the step below is traced and compiled by jax.jit


@pytest.mark.parametrize("accum", [1, 2, 3, 4, 7, 16])
def test_applied_gradient_equals_full_batch_gradient(accum):
    x, y = data(mlp(), 10)  # 10 examples: 3, 4 and 7 do not divide it, 16 exceeds it
    assert_all_close(applied_update(mlp, accum, x, y), full_batch_gradient(mlp(), x, y))


def test_without_jit_the_same_update():
    x, y = data(mlp(), 10)
    assert_all_close(applied_update(mlp, 4, x, y, run_eagerly=True), full_batch_gradient(mlp(), x, y))


def test_swin_gradient_equals_full_batch_gradient():
    x, y = data(tiny_swin(), 7)  # 3 micro-batches of 3, the last one padded with 2 masked rows
    assert_all_close(applied_update(tiny_swin, 3, x, y), full_batch_gradient(tiny_swin(), x, y))


@pytest.mark.parametrize("accum", [2, 4])
def test_sample_weights_weigh_the_update_as_in_the_full_batch(accum):
    x, y = data(mlp(), 10)
    sample_weight = np.random.default_rng(3).uniform(0.0, 2.0, 10).astype("float32")
    sample_weight[[1, 8]] = 0.0
    want = full_batch_gradient(mlp(), x, y, sample_weight=sample_weight)
    assert_all_close(applied_update(mlp, accum, x, y, sample_weight=sample_weight), want)
    # and the weights matter: the unweighted gradient is another one
    assert max(np.abs(a - b).max() for a, b in zip(want, full_batch_gradient(mlp(), x, y))) > 1e-3


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_weight_penalty_counts_once_per_step(policy):
    make = lambda: mlp(regularizer=keras.regularizers.L2(0.05))
    x, y = data(make(), 10)
    want = full_batch_gradient(make(), x, y, l2=0.05)
    keras.mixed_precision.set_global_policy(policy)  # mixed_float16: the correction is loss-scaled too
    got = applied_update(make, 4, x, y)  # 4 micro-batches of 3, the last one padded
    assert_all_close(got, want, atol=1e-5 if policy == "float32" else 2e-3)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_accumulation_matches_full_batch(policy):
    check_mixed_precision_accumulation(policy, mlp, full_batch_gradient)


@pytest.mark.parametrize("accum", [3, 4])
def test_gradient_with_dropout_and_drop_path_equals_full_batch_gradient(accum):
    check_dropout_accumulation(accum, full_batch_gradient)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_accumulation_with_dropout_matches_full_batch(policy):
    check_mixed_precision_accumulation(policy, lambda: stochastic_model("swin"), keyed(full_batch_gradient))
