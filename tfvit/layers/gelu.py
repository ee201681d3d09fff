"""Exact GELU with its derivative written out.

Hendrycks & Gimpel 2016:

    GELU(x)  = x Phi(x),              Phi(x) = (1 + erf(x / sqrt(2))) / 2
    GELU'(x) = Phi(x) + x phi(x),     phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

This is the erf form ViT, timm and transformers' "gelu" use, not the tanh approximation that
``keras.activations.gelu`` defaults to.

Why a function of tfvit's own: ``keras.activations.gelu(x, approximate=False)`` computes
``x/2 * erfc(-x/sqrt(2))`` and TensorFlow, without XLA, runs that and its automatic derivative as a
chain of separate element-wise kernels, and in bfloat16 its Erfc kernel is a visible share of a
training step's op time. Here the forward pass is one erf in float32, and the backward pass evaluates
the closed-form derivative above from the saved input, fewer kernels and passes over the activations:
it is faster than Keras's forward and backward, most of all without XLA (docs/performance.md
measures both with ``python -m tools.elementwise_bench --part ops``). On TensorFlow the forward
pass and the derivative are each compiled as one element-wise XLA cluster (``tfvit.layers.xla_cluster``)
inside a step that is not compiled as a whole, and ``gelu(x, bias)`` adds a dense layer's bias in the
same loop (the MLP's fc1 uses it); the bias gradient, a sum over the tokens, stays a TensorFlow
reduction. JAX programs are
compiled by XLA, which fuses the autodiff graph into a few loops by itself, so there the plain
formula is used: the choice is ``closed_form_gradients()``.

Computed in float32 whatever the input dtype, as Keras's LayerNormalization does, and returned in
the input's dtype. The erf form is PyTorch's (and so timm's) formula; in float32 ``1 + erf`` cancels
to 0 below x = -5.5, where |GELU| < 1e-7 (the erfc form keeps that tail, but it runs the slower
Erfc kernel that this function avoids).
"""

import math
import os

import keras
from keras import ops

from tfvit.layers.xla_cluster import xla_cluster

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def closed_form_gradients():
    """Whether GELU, LayerNorm and the bias addition (tfvit/layers/bias.py) use their hand-written
    gradients: on TensorFlow, yes.

    On JAX the automatic derivative is compiled and fused by XLA already; the plain formula leaves
    memory planning and rematerialisation to the compiler. ``TFVIT_CLOSED_FORM_GRADIENTS=0`` in the
    environment turns them off (read when a model is traced): ``python -m tools.elementwise_bench`` uses it
    to time a whole model both ways, and it rules them out when a gradient looks wrong. Off, bias
    gradients under bfloat16 are TensorFlow's, which are wrong (tfvit/layers/bias.py).
    """
    if os.environ.get("TFVIT_CLOSED_FORM_GRADIENTS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return keras.backend.backend() == "tensorflow"


def _normal_cdf(x32):
    return 0.5 * (1.0 + ops.erf(x32 * _INV_SQRT2))


def _preactivation(x, bias):
    """x + bias (bias None: x) in float32."""
    x32 = ops.cast(x, "float32")
    return x32 if bias is None else x32 + ops.cast(bias, "float32")


@xla_cluster("gelu")
def _gelu_forward(x, bias):
    """GELU(x + bias) in x's dtype: element-wise, one fused loop as an XLA cluster."""
    z = _preactivation(x, bias)
    return ops.cast(z * _normal_cdf(z), x.dtype)


@xla_cluster("gelu")
def _gelu_backward(upstream, x, bias):
    """upstream * GELU'(x + bias), recomputed from the input: element-wise, one fused loop as an XLA cluster.

    Recomputed rather than saved: the saved tensor stays the (often bfloat16) input, no float32 copies
    of the MLP's widest activation live until the backward pass."""
    z = _preactivation(x, bias)
    slope = _normal_cdf(z) + z * (_INV_SQRT_2PI * ops.exp(-0.5 * ops.square(z)))
    return ops.cast(ops.cast(upstream, "float32") * slope, upstream.dtype)


def _gelu_closed_form(x, bias):
    # The bias gradient, a sum over the tokens, stays a TensorFlow reduction outside the clusters:
    # XLA's CPU code for sums across rows is slower than TensorFlow's kernel, and TensorFlow's sums a
    # bfloat16 gradient in float32 (tfvit/layers/bias.py).
    @ops.custom_gradient
    def biased(x, bias):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            dx = _gelu_backward(upstream, x, bias)
            token_axes = tuple(range(len(dx.shape) - 1))
            return dx, ops.cast(ops.sum(dx, axis=token_axes), bias.dtype)

        return _gelu_forward(x, bias), grad

    @ops.custom_gradient
    def plain(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _gelu_backward(upstream, x, None)

        return _gelu_forward(x, None), grad

    return plain(x) if bias is None else biased(x, bias)


def gelu(x, bias=None):
    """Exact (erf) GELU of ``x`` (of ``x + bias`` when a (C,) ``bias`` is given, the bias gradient
    summed in float32), in ``x``'s dtype, computed in float32."""
    x = ops.convert_to_tensor(x)
    if closed_form_gradients():
        return _gelu_closed_form(x, bias)
    z = _preactivation(x, bias)
    return ops.cast(z * _normal_cdf(z), x.dtype)
