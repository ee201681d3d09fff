"""Mixed precision in one call: float32, float16 or bfloat16 compute with float32 weights.

Micikevicius et al. 2018, "Mixed Precision Training": weights and optimizer state stay float32, layers
compute in 16 bits. With ``"mixed_float16"`` Keras's ``compile`` wraps the optimizer in a
``LossScaleOptimizer`` (dynamic loss scaling keeps small gradients from flushing to zero);
``"mixed_bfloat16"`` has float32's exponent range and needs no scaling. tfvit's layers keep softmax,
normalisation and Performer feature exponentials in float32 either way.

The policy is global and read when a layer is created: set it before building the model.
"""

import contextlib

import keras

_POLICIES = {
    "float32": "float32", "fp32": "float32",
    "mixed_float16": "mixed_float16", "fp16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16", "bf16": "mixed_bfloat16",
}


def _policy_name(policy):
    if isinstance(policy, keras.DTypePolicy):
        policy = policy.name
    name = _POLICIES.get(policy.lower()) if isinstance(policy, str) else None
    if name is None:
        raise ValueError(
            f"policy must be one of {', '.join(map(repr, _POLICIES))}, got {policy!r}."
        )
    return name


def set_precision(policy):
    """Set Keras's global dtype policy and return its canonical name.

    ``policy``: ``"float32"`` / ``"fp32"``, ``"mixed_float16"`` / ``"fp16"``, ``"mixed_bfloat16"`` /
    ``"bf16"`` (case-insensitive), or a ``keras.DTypePolicy`` with one of those names.
    """
    name = _policy_name(policy)
    keras.mixed_precision.set_global_policy(name)
    return name


@contextlib.contextmanager
def precision(policy):
    """Build models under ``policy`` and put the previous global policy back on exit (also on error).

        with precision("bf16"):
            model = tfvit.create_model("vit_cifar_patch4_32")
    """
    name = _policy_name(policy)  # validate before touching the global state
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)
