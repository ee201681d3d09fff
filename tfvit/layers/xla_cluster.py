"""Element-wise work compiled by XLA inside a TensorFlow step that is not compiled as a whole.

On the CPU, TensorFlow without XLA runs every element-wise op (a cast, a multiply, an erf) as its
own kernel, one pass over memory each, and its bfloat16 element-wise kernels are slow; whole-step XLA
fuses them but runs bfloat16 matrix products at about half of oneDNN's rate. A
``tf.function(jit_compile=True)`` called inside a step that is not compiled is one XLA cluster, one
fused loop, while the matrix products around it stay on oneDNN's kernels. ``xla_cluster(name)``
marks a function of tensors as such a cluster. Where it pays is measured, not assumed: chains of
element-wise work gain most; XLA's CPU code for sums along rows (LayerNorm's moments) is barely faster
than TensorFlow's kernels and for sums across rows (bias and scale gradients) slower, while its
products, even with a vector, are fast. So inside a cluster such sums are written as products with a
constant vector, or left to TensorFlow outside it. The clusters, each a forward and a backward
function called from a hand-written gradient:

    gelu            the exact GELU, with fc1's bias added first, and its derivative (tfvit/layers/gelu.py);
                    the bias gradient is TensorFlow's sum
    layer_norm      LayerNorm and its closed-form gradient, its sums as products (tfvit/layers/layer_norm.py)

``TFVIT_XLA_CLUSTERS`` in the environment picks them (read when a model is traced): unset or
``all`` for every cluster, ``none`` (or ``0``) for none, or a comma-separated list of names.
``python -m tools.xla_cluster_bench`` times a model with each setting, interleaved; docs/performance.md
has its numbers. Under a step compiled as a whole (``jit_compile=True``) the clusters are inlined into
it, and on JAX, where every step is XLA already, the functions run as they are.

A cluster's function must take and return tensors only (Python numbers become part of the trace) and
must not read variables: callers pass ``variable`` values cast to the dtype the function expects.
"""

import contextlib
import functools
import os
import threading

import keras

CLUSTERS = ("gelu", "layer_norm")
SWITCH = "TFVIT_XLA_CLUSTERS"
_override = threading.local()


@contextlib.contextmanager
def all_off():
    """Within this block (this thread), no cluster is on, whatever ``TFVIT_XLA_CLUSTERS`` says: the
    functions run as they are. ``tfvit.models.count_macs`` traces a model so, because the LayerNorm
    cluster writes its sums as products, which are not the model's multiply-adds."""
    previous = getattr(_override, "off", False)
    _override.off = True
    try:
        yield
    finally:
        _override.off = previous


def enabled_clusters():
    """The cluster names ``TFVIT_XLA_CLUSTERS`` selects (all of them when unset) on TensorFlow; none on JAX
    and inside ``all_off()``."""
    if keras.backend.backend() != "tensorflow" or getattr(_override, "off", False):
        return frozenset()
    setting = os.environ.get(SWITCH, "all").strip().lower()
    if setting in ("", "all", "1", "on", "true", "yes"):
        return frozenset(CLUSTERS)
    if setting in ("none", "0", "off", "false", "no"):
        return frozenset()
    names = {name.strip() for name in setting.split(",") if name.strip()}
    unknown = sorted(names - set(CLUSTERS))
    if unknown:
        raise ValueError(f"{SWITCH}={setting!r}: unknown cluster(s) {unknown}; the clusters are {list(CLUSTERS)}, "
                         "or 'all' / 'none'.")
    return frozenset(names)


def cluster_enabled(name):
    """Whether cluster ``name`` is compiled on its own (TensorFlow, and selected by ``TFVIT_XLA_CLUSTERS``)."""
    if name not in CLUSTERS:
        raise ValueError(f"unknown XLA cluster {name!r}; the clusters are {list(CLUSTERS)}.")
    return name in enabled_clusters()


def xla_cluster(name):
    """Decorator: run the function as XLA cluster ``name`` where ``cluster_enabled(name)``, else as it is.

    The compiled function is made once per decorated function (TensorFlow then traces and compiles it
    once per input signature, and every layer with the same shapes shares the compilation).
    """

    def decorate(fn):
        compiled = None

        @functools.wraps(fn)
        def call(*args):
            nonlocal compiled
            if not cluster_enabled(name):
                return fn(*args)
            if compiled is None:
                import tensorflow as tf

                compiled = tf.function(fn, jit_compile=True, autograph=False)
            return compiled(*args)

        return call

    return decorate
