"""AdamW and SGD configured as vision transformers are trained, weight-decay exclusions included.

Decoupled weight decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"): before
each update, w <- w - lr * wd * w for every variable not excluded. Transformers exclude biases,
normalisation scales and offsets, position embeddings, class tokens and relative-position bias tables
(timm's ``no_weight_decay`` and its rule "no decay for 1-D parameters"; DeiT, Swin): shrinking them
towards zero regularises nothing useful and hurts accuracy.

Keras tests each excluded name with ``re.search`` against the name of the variable it updates. That is
``"gamma"`` on JAX, but on TensorFlow it is the ``tf.Variable``'s name: the whole path plus ``":0"``
(``"blocks.0/norm1/gamma:0"``), where a bare ``"beta"`` would also hit ``"beta_scale"`` or a layer
called ``"beta_proj"``; under ``tf.distribute`` the other replicas' copies are ``".../gamma/replica_1:0"``.
So each name becomes a pattern for the last path component only, ``(^|/)gamma(/replica_N)?(:N)?$``,
which excludes the same variables on every backend and every replica.
Keras's optimizers forget these exclusions when saved; the ``AdamW`` and ``SGD`` here are the Keras
classes with the exclusions kept in their config, so a model reloaded from ``.keras`` to resume
training still leaves its norms and embeddings undecayed.

Per-variable learning rates (``lr_multipliers``): Keras 3 optimizers have no parameter groups, so
these take a mapping {variable path or glob pattern: multiplier m} and update each variable with the
rate lr * m, in its gradient step and in its decoupled decay alike, w <- w - (lr m) wd w, as a PyTorch
parameter group whose lr is scaled (timm's ``lr_scale``). Layer-wise learning-rate decay (BEiT;
``tfvit.training.finetune.layer_decay_multipliers``) is one such mapping.
"""

import fnmatch
import math
import numbers
import re

import keras
from keras import ops

from tfvit._keras_range import require_tested_keras

DEFAULT_NO_DECAY = (
    "bias",                          # Dense / Conv biases: blocks.N/attn/qkv/bias
    "gamma",                         # LayerNormalization / BatchNormalization scales: blocks.N/norm1/gamma
    "beta",                          # their offsets
    "pos_embed",                     # pos_embed/pos_embed (ViT)
    "absolute_pos_embed",            # Swin's optional absolute position embedding (timm name)
    "cls_token",                     # cls_token/cls_token
    "dist_token",                    # DeiT's distillation token
    "relative_position_bias_table",  # layers.N/blocks.M/attn/relative_position_bias_table (Swin)
)

# Weight decay worth starting from: AdamW as in DeiT and Swin; SGD as in ResNet training, where a
# decoupled decay of 0.05 would shrink every weight by 5% of the rate at each update.
_DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 1e-4}


def _non_negative(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite float >= 0, got {value!r}.")
    return float(value)


def _check_learning_rate(value):
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or callable(value):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) < float("inf"):
        return float(value)
    raise ValueError(f"learning_rate must be a float > 0 or a LearningRateSchedule, got {value!r}.")


def _check_names(names):
    if isinstance(names, str):
        raise ValueError(  # noqa: TRY004 (tfvit's rule: bad arguments raise ValueError)
            f"exclude_from_weight_decay must be a list of variable names, got the string {names!r}; "
            f"write [{names!r}]."
        )
    names = tuple(names or ())
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"exclude_from_weight_decay must hold variable names such as 'gamma' or 'pos_embed', got "
                f"{name!r}. A path ('blocks.0/norm1/gamma') matches nothing on the JAX backend, where Keras "
                f"compares the bare variable name."
            )
    return names


def _last_component(name):
    """A pattern matching ``name`` as the last path component, with TensorFlow's suffixes or not."""
    return rf"(?:^|/){re.escape(name)}(?:/replica_\d+)?(?::\d+)?$"


def _check_multipliers(multipliers):
    """{path or pattern: finite float >= 0}, in the given order (the first matching pattern wins)."""
    if multipliers is None:
        return {}
    if isinstance(multipliers, str) or not hasattr(multipliers, "items"):
        raise ValueError(
            f"lr_multipliers must be a mapping {{variable path or pattern: multiplier}}, e.g. "
            f"{{'blocks.0/*': 0.5}}, got {multipliers!r}."
        )
    checked = {}
    for key, value in multipliers.items():
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"lr_multipliers keys must be variable paths or patterns (non-empty strings), got {key!r}."
            )
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not ok:
            raise ValueError(f"lr_multipliers[{key!r}] must be a finite float >= 0, got {value!r}.")
        checked[key] = float(value)
    return checked


def _is_pattern(key):
    return any(c in key for c in "*?[")


class _ScalesLearningRates:
    """Mixin: per-variable learning-rate multipliers for the gradient step and the decoupled decay.

    Keras calls ``update_step(gradient, variable, learning_rate)`` once per variable, inside the
    compiled step (on TensorFlow through ``tf.distribute``'s per-variable update, with the
    ``tf.Variable`` rather than the Keras variable); the multiplier is looked up by the variable's
    optimizer index, fixed at ``build`` from ``variable.path``, so it is a Python float by then and
    the step stays XLA-compilable. Keras applies weight decay to all variables in a separate pass
    before the updates; with multipliers it moves into ``update_step``, just before the variable's own
    update, which reads only the gradient and the optimizer state: the result is the same.
    """

    def _set_lr_multipliers(self, multipliers):
        require_tested_keras(f"tfvit.training.optimizers.{type(self).__name__}")
        self._lr_multipliers = _check_multipliers(multipliers)
        self._multiplier_by_index = ()

    @property
    def lr_multipliers(self):
        """The {path or pattern: multiplier} mapping given to the constructor (a copy)."""
        return dict(self._lr_multipliers)

    def learning_rate_multiplier(self, path):
        """Multiplier of the variable at ``path``: its exact key, else the first matching pattern, else 1."""
        if path in self._lr_multipliers:
            return self._lr_multipliers[path]
        for key, value in self._lr_multipliers.items():
            if _is_pattern(key) and fnmatch.fnmatchcase(path, key):
                return value
        return 1.0

    def build(self, variables):
        super().build(variables)
        if self._lr_multipliers:
            self._multiplier_by_index = tuple(
                self.learning_rate_multiplier(getattr(v, "path", v.name)) for v in self._trainable_variables
            )

    def update_step(self, gradient, variable, learning_rate):
        if not self._lr_multipliers:
            return super().update_step(gradient, variable, learning_rate)
        multiplier = self._multiplier_by_index[self._get_variable_index(variable)]
        if multiplier != 1.0:  # leave the graph and the rounding of unscaled variables untouched
            learning_rate = learning_rate * multiplier
        if self.weight_decay and self._use_weight_decay(variable):
            lr = ops.cast(learning_rate, variable.dtype)
            wd = ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, variable * wd * lr)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        if not self._lr_multipliers:  # with multipliers, update_step decays each variable itself
            super()._apply_weight_decay(variables)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": dict(self._lr_multipliers)}


class _KeepsExclusions:
    """Mixin: exclusions as a constructor argument, saved in ``get_config``."""

    def _set_exclusions(self, names):
        self._no_decay_names = _check_names(names)
        if self._no_decay_names:
            self.exclude_from_weight_decay(var_names=[_last_component(n) for n in self._no_decay_names])

    @property
    def no_decay_names(self):
        """The variable names this optimizer never decays."""
        return self._no_decay_names

    def get_config(self):
        return {**super().get_config(), "exclude_from_weight_decay": list(self._no_decay_names)}


@keras.saving.register_keras_serializable(package="tfvit")
class AdamW(_KeepsExclusions, _ScalesLearningRates, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` whose ``exclude_from_weight_decay`` names survive saving, with
    optional per-variable ``lr_multipliers`` ({path or glob pattern: m}; saved too)."""

    def __init__(self, *args, exclude_from_weight_decay=(), lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_exclusions(exclude_from_weight_decay)
        self._set_lr_multipliers(lr_multipliers)


@keras.saving.register_keras_serializable(package="tfvit")
class SGD(_KeepsExclusions, _ScalesLearningRates, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose ``exclude_from_weight_decay`` names survive saving, with
    optional per-variable ``lr_multipliers`` ({path or glob pattern: m}; saved too)."""

    def __init__(self, *args, exclude_from_weight_decay=(), lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_exclusions(exclude_from_weight_decay)
        self._set_lr_multipliers(lr_multipliers)


def build_optimizer(
    name="adamw",
    learning_rate=1e-3,
    *,
    weight_decay=None,
    momentum=0.9,
    nesterov=False,
    clipnorm=None,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    exclude_from_weight_decay=DEFAULT_NO_DECAY,
    lr_multipliers=None,
):
    """Return an ``AdamW`` or ``SGD`` (subclasses of ``keras.optimizers.AdamW`` / ``SGD``).

    Args:
        name: ``"adamw"`` or ``"sgd"`` (case-insensitive).
        learning_rate: a float or a ``LearningRateSchedule`` (evaluated at ``optimizer.iterations``).
        weight_decay: decoupled decay wd in w <- w - lr * wd * w; ``None`` gives 0.05 for AdamW
            (DeiT, Swin) and 1e-4 for SGD. Keras applies it the same way for SGD (decoupled, before the
            momentum step), which differs from PyTorch's SGD that adds wd * w to the gradient.
        momentum, nesterov: SGD only.
        clipnorm: clip each variable's gradient to this L2 norm (``None``: no clipping).
        beta_1, beta_2, epsilon: AdamW only; epsilon defaults to 1e-8 as in PyTorch and timm.
        exclude_from_weight_decay: variable names (not paths) that are never decayed.
        lr_multipliers: {variable path or glob pattern: m >= 0}; the variable's learning rate, in its
            update and its weight decay, is lr * m. An exact path wins over patterns, then the first
            matching pattern in the mapping's order; unmatched variables keep m = 1. ``"*"`` matches
            across ``/``: write ``"blocks.1/*"``, not ``"blocks.1*"`` (which also matches ``blocks.10``).
            E.g. ``tfvit.training.finetune.layer_decay_multipliers(model, 0.65)``.
    """
    key = name.lower() if isinstance(name, str) else None
    if key not in _DEFAULT_WEIGHT_DECAY:
        raise ValueError(f"name must be one of 'adamw', 'sgd', got {name!r}.")
    learning_rate = _check_learning_rate(learning_rate)
    decay = _DEFAULT_WEIGHT_DECAY[key] if weight_decay is None else _non_negative("weight_decay", weight_decay)
    names = _check_names(exclude_from_weight_decay)
    multipliers = _check_multipliers(lr_multipliers)
    if clipnorm is not None:
        ok = isinstance(clipnorm, numbers.Real) and not isinstance(clipnorm, bool)
        if not ok or not 0.0 < float(clipnorm) < float("inf"):
            raise ValueError(f"clipnorm must be a float > 0 or None, got {clipnorm!r}.")

    common = {
        "learning_rate": learning_rate, "weight_decay": decay, "clipnorm": clipnorm,
        "exclude_from_weight_decay": names if decay > 0.0 else (), "lr_multipliers": multipliers,
    }
    if key == "adamw":
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{arg} must be a float in [0, 1), got {value!r}.")
        if not isinstance(epsilon, numbers.Real) or not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be a float > 0, got {epsilon!r}.")
        return AdamW(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **common)
    else:
        if not isinstance(momentum, numbers.Real) or not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be a float in [0, 1), got {momentum!r}.")
        return SGD(momentum=momentum, nesterov=bool(nesterov), **common)
