"""Layer normalisation over the last axis with its backward pass written out.

Ba et al. 2016. Per token, over its D features:

    mu = mean(x),  r = 1 / sqrt(mean((x - mu)^2) + eps),  x_hat = (x - mu) r,  y = gamma x_hat + beta

and, with g = dy * gamma, the gradients

    dx     = r (g - mean(g) - x_hat mean(g x_hat))
    dgamma = sum over tokens of dy x_hat,   dbeta = sum over tokens of dy.

Why a layer of tfvit's own: TensorFlow without XLA runs Keras's LayerNormalization and its automatic
derivative as more than a dozen small kernels (moments, casts, broadcasts and their gradients), each a
pass over the activations; the three lines above need a handful, and keep only x_hat and r for the
backward pass. Without XLA that is faster than Keras's on its own, and, with tfvit's GELU, makes whole
ViT and Swin training steps a little faster and their peak memory lower (fewer intermediate tensors
kept for the backward pass); under XLA, which fuses Keras's version as well, the gain disappears.
docs/performance.md has the numbers, measured with ``python -m tools.elementwise_bench``.
Computed in float32 whatever the input dtype, like Keras's, and returned in the layer's compute dtype.

``LayerNorm`` is a ``keras.layers.LayerNormalization``: the same arguments, weights (``gamma``,
``beta``), names and checkpoints. It takes the closed-form path for the configuration every tfvit
model uses (last axis, centred and scaled, no RMS scaling) on TensorFlow, and Keras's otherwise
(``tfvit.layers.gelu.closed_form_gradients``).
"""

import inspect

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers.gelu import closed_form_gradients
from tfvit.layers.xla_cluster import cluster_enabled, xla_cluster


def _row_mean(t, by_products):
    """Mean over the last axis, keepdims; as a product with a constant column where ``by_products``."""
    if not by_products:
        return ops.mean(t, axis=-1, keepdims=True)
    width = t.shape[-1]
    means = ops.matmul(ops.reshape(t, (-1, width)), ops.full((width, 1), 1.0 / width, dtype=t.dtype))
    return ops.reshape(means, (*ops.shape(t)[:-1], 1))


def _token_sum(t, by_products):
    """Sum over every axis but the last (the tokens); as a product with a row of ones where ``by_products``."""
    if not by_products:
        return ops.sum(t, axis=tuple(range(len(t.shape) - 1)))
    flat = ops.reshape(t, (-1, t.shape[-1]))
    return ops.matmul(ops.transpose(ops.ones_like(flat[:, :1])), flat)[0]


@xla_cluster("layer_norm")
def _normalize(x, gamma, beta, epsilon, by_products):
    """(y in x's dtype, x_hat, r), the last two float32 and kept for the backward pass."""
    x32 = ops.cast(x, "float32")
    centred = x32 - _row_mean(x32, by_products)
    inv_std = ops.rsqrt(_row_mean(ops.square(centred), by_products) + epsilon)
    x_hat = centred * inv_std
    return ops.cast(x_hat * gamma + beta, x.dtype), x_hat, inv_std


@xla_cluster("layer_norm")
def _normalize_gradients(upstream, x_hat, inv_std, gamma, dtype, by_products):
    """(dx in ``dtype``, dgamma, dbeta) from the module's formulas."""
    dy = ops.cast(upstream, "float32")
    g = dy * gamma
    dx = inv_std * (g - _row_mean(g, by_products) - x_hat * _row_mean(g * x_hat, by_products))
    return ops.cast(dx, dtype), _token_sum(dy * x_hat, by_products), _token_sum(dy, by_products)


def layer_norm(x, gamma, beta, epsilon):
    """LayerNorm of ``x`` over its last axis with the closed-form gradient, in ``x``'s dtype.

    ``gamma`` and ``beta`` are float32 tensors of shape (D,); the gradient flows to all three.
    Where the ``layer_norm`` XLA cluster is on (``tfvit.layers.xla_cluster``), the forward and the
    backward pass are each one cluster, and their sums (over the width, and over the tokens) are
    products with a constant vector: XLA's CPU code computes those faster than its own reductions,
    which across the tokens are slower than TensorFlow's kernels (``python -m tools.xla_cluster_bench
    --part kernels``).
    """
    by_products = cluster_enabled("layer_norm")

    @ops.custom_gradient
    def normalize(x, gamma, beta):
        y, x_hat, inv_std = _normalize(x, gamma, beta, epsilon, by_products)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _normalize_gradients(upstream, x_hat, inv_std, gamma, x.dtype, by_products)

        return y, grad

    return normalize(x, gamma, beta)


@keras.saving.register_keras_serializable(package="tfvit")
class LayerNorm(keras.layers.LayerNormalization):
    """``keras.layers.LayerNormalization`` whose common case runs ``layer_norm`` above."""

    def __init__(self, *args, **kwargs):
        check.known_arguments(self, kwargs)  # a TypeError with the closest name, as every tfvit layer
        super().__init__(*args, **kwargs)

    __init__.__signature__ = inspect.signature(keras.layers.LayerNormalization.__init__)  # for help()

    def _closed_form_applies(self, rank):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        last_axis_only = len(axes) == 1 and axes[0] in (-1, rank - 1)
        return (closed_form_gradients() and last_axis_only and self.center and self.scale
                and not self.rms_scaling)

    def call(self, inputs):
        if not self._closed_form_applies(len(inputs.shape)):
            return super().call(inputs)
        # cast, not convert_to_tensor: that returns the variable itself, and TensorFlow's custom
        # gradient would then have to differentiate a variable read inside the function
        outputs = layer_norm(inputs, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"), self.epsilon)
        return ops.cast(outputs, self.compute_dtype)
