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
measures both with ``python -m tools.elementwise_bench --part ops``). JAX programs are
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


@ops.custom_gradient
def _gelu_closed_form(x):
    x32 = ops.cast(x, "float32")

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        # Recomputed from the input rather than saved: the saved tensor stays the (often bfloat16)
        # input, no float32 copies of the MLP's widest activation live until the backward pass.
        y32 = ops.cast(x, "float32")
        slope = _normal_cdf(y32) + y32 * (_INV_SQRT_2PI * ops.exp(-0.5 * ops.square(y32)))
        return upstream * ops.cast(slope, upstream.dtype)

    return ops.cast(x32 * _normal_cdf(x32), x.dtype), grad


def gelu(x):
    """Exact (erf) GELU of ``x``, in ``x``'s dtype, computed in float32."""
    x = ops.convert_to_tensor(x)
    if closed_form_gradients():
        return _gelu_closed_form(x)
    x32 = ops.cast(x, "float32")
    return ops.cast(x32 * _normal_cdf(x32), x.dtype)
