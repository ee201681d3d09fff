"""The fastest training settings for the machine: the mixed-precision policy and whether to compile with XLA.

oneDNN's bfloat16 matrix products run at twice float32's rate, but only outside XLA: XLA's CPU backend
does not use them, and its bfloat16 matmul is no faster than its float32 one. So a CPU that has bfloat16
matrix instructions (AMX-BF16 or AVX512-BF16) trains fastest in mixed_bfloat16 without XLA; on any other
CPU bfloat16 would be emulated, and float32 with XLA (which fuses the element-wise work between the
products) wins. docs/performance.md, "Defaults per device", gives the figures, measured with
``python -m tools.benchmark``.

On a GPU the choice is the usual one, not yet measured by tfvit: XLA, and bfloat16 on compute
capability 8.0 or newer (Ampere on; same exponent range as float32, no loss scaling), float16 with
loss scaling before. On the JAX backend every train step is compiled by XLA, so ``jit_compile`` is
always True, and a CPU trains in float32 there.
"""

import dataclasses
import functools

import keras

BFLOAT16_MATMUL_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of the instructions


@dataclasses.dataclass(frozen=True)
class TrainingDefaults:
    precision: str       # a Keras dtype policy name
    jit_compile: bool
    device: str          # what the choice was made for, in words
    reason: str


@functools.lru_cache(maxsize=None)
def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _gpu_compute_capability():
    """(major, minor) of the first GPU the backend sees, (0, 0) for one of unknown capability, None without."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from tfvit._quiet_import import filtered_native_stderr

        # Without a GPU (or its driver) the first query logs "failed call to cuInit" as an error: it only
        # says there is no GPU, which the choice below reports in words.
        with filtered_native_stderr(expected=("failed call to cuInit",)):
            gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        capability = getattr(gpus[0], "compute_capability", "0.0")
        return tuple(int(part) for part in str(capability).split(".")[:2])
    return None


def choose(backend, gpu_capability, flags):
    """The rule, on explicit facts (so it can be tested): see the module docstring."""
    if gpu_capability is not None:
        bf16 = gpu_capability >= (8, 0)
        precision = "mixed_bfloat16" if bf16 else "mixed_float16"
        return TrainingDefaults(precision, True, f"GPU (compute capability {gpu_capability[0]}.{gpu_capability[1]})",
                                "bfloat16 tensor cores" if bf16 else "float16 tensor cores, with loss scaling")
    if backend == "jax":
        return TrainingDefaults("float32", True, "CPU (JAX)", "JAX compiles with XLA, whose CPU bfloat16 matmul is slow")
    if any(flag in flags for flag in BFLOAT16_MATMUL_FLAGS):
        return TrainingDefaults("mixed_bfloat16", False, "CPU with bfloat16 matrix instructions",
                                "oneDNN's bfloat16 matmuls (outside XLA) run at twice float32's rate")
    return TrainingDefaults("float32", True, "CPU without bfloat16 matrix instructions",
                            "XLA fuses the element-wise work; bfloat16 would be emulated")


def training_defaults():
    """``TrainingDefaults`` for this machine and Keras backend: use ``precision`` with
    ``tfvit.training.set_precision`` before building the model and ``jit_compile`` in ``compile``."""
    return choose(keras.backend.backend(), _gpu_compute_capability(), cpu_flags())


def resolve(precision="auto", jit_compile=None):
    """(precision, jit_compile) with ``"auto"`` / None replaced by this machine's defaults."""
    if precision == "auto" or jit_compile is None:
        defaults = training_defaults()
        precision = defaults.precision if precision == "auto" else precision
        jit_compile = defaults.jit_compile if jit_compile is None else jit_compile
    return precision, bool(jit_compile)
