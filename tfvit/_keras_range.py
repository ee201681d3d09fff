"""The Keras versions tfvit is tested with, and a clear error outside them where it depends on internals.

tfvit's optimizers (per-variable learning rates, weight-decay exclusions) override private methods of
Keras's optimizers (``_apply_weight_decay``, ``_use_weight_decay``, ``_get_variable_index``,
``_trainable_variables``), and its keyed RandAugment overrides ``_get_seed_generator``. Private methods
change without notice between Keras releases; a changed one would not fail but train with wrong steps or
unkeyed draws. So those parts refuse a Keras outside the range CI tests (the one setup.cfg declares).
"""

import keras

TESTED_KERAS = ((3, 15), (3, 16))  # from (inclusive) to (exclusive), as setup.cfg's keras>=3.15,<3.16


def _major_minor(version):
    return tuple(int(part) for part in version.split(".")[:2])


def require_tested_keras(feature, version=None):
    """Raise RuntimeError naming ``feature`` when Keras's version is outside ``TESTED_KERAS``."""
    version = version or keras.version()
    low, high = TESTED_KERAS
    if not low <= _major_minor(version) < high:
        span = f"keras>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
        raise RuntimeError(
            f"{feature} overrides private Keras internals that tfvit is tested with only for {span}; this is Keras "
            f"{version}, where they may have changed and would silently train or augment wrongly. Install a tested "
            f"version: pip install '{span}'."
        )
