"""What every tfvit layer promises: config round trip (of every constructor argument, below),
registration for .keras files, and mixed precision (compute in the policy's dtype, float32 softmax and
normalisation, close to float32)."""

import inspect

import keras
import numpy as np
import pytest

from tfvit import layers
from tests import reference

RNG = np.random.default_rng(0)
CASES = {
    "PatchEmbedding": (lambda: layers.PatchEmbedding(4, 16, use_norm=True), (2, 8, 8, 3)),
    "ClassToken": (lambda: layers.ClassToken(), (2, 4, 8)),
    "PositionEmbedding": (lambda: layers.PositionEmbedding((2, 2)), (2, 5, 8)),
    "MLP": (lambda: layers.MLP(16), (2, 4, 8)),
    "LayerNorm": (lambda: layers.LayerNorm(epsilon=1e-6), (2, 4, 8)),
    "Dense": (lambda: layers.Dense(6), (2, 4, 8)),
    "Conv2D": (lambda: layers.Conv2D(6, 2, strides=2), (2, 4, 4, 3)),
    "DropPath": (lambda: layers.DropPath(0.2, seed=1), (2, 4, 8)),
    "Dropout": (lambda: layers.Dropout(0.2, seed=1), (2, 4, 8)),
    "MultiHeadSelfAttention": (lambda: layers.MultiHeadSelfAttention(2), (2, 5, 8)),
    "TransformerBlock": (lambda: layers.TransformerBlock(2, drop_path=0.1), (2, 5, 8)),
    "WindowAttention": (lambda: layers.WindowAttention(2, 2), (3, 4, 8)),
    "SwinBlock": (lambda: layers.SwinBlock(2, window_size=2, shift_size=1), (2, 6, 6, 8)),
    "SwinStage": (lambda: layers.SwinStage(2, 2, 16, window_size=2, downsample=True), (2, 6, 6, 8)),
    "PatchMerging": (lambda: layers.PatchMerging(), (2, 5, 5, 8)),
    "TokenPooling": (lambda: layers.TokenPooling("mean"), (2, 5, 8)),
    "PerformerAttention": (lambda: layers.PerformerAttention(2, num_features=8, seed=0), (2, 5, 8)),
    "NeighborhoodAttention2D": (lambda: layers.NeighborhoodAttention2D(2, kernel_size=3), (2, 16, 8)),
    "LocalAttention1D": (lambda: layers.LocalAttention1D(2, window=3), (2, 7, 8)),
}


def test_every_public_layer_is_covered():
    public = {name for name in layers.__all__ if isinstance(getattr(layers, name), type)}
    assert public == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_round_trip_and_registration(name):
    make, shape = CASES[name]
    layer = make()
    layer(RNG.normal(size=shape).astype("float32"))
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(type(layer)) == f"tfvit>{name}"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 4e-2)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_mixed_precision_outputs(name, policy, tolerance):
    make, shape = CASES[name]
    reference.check_mixed_precision(make, RNG.normal(size=shape).astype("float32"), policy, tolerance)


@pytest.mark.parametrize("name", ["MultiHeadSelfAttention", "TransformerBlock", "WindowAttention", "SwinBlock",
                                  "NeighborhoodAttention2D", "LocalAttention1D"])
def test_softmax_runs_in_float32_under_mixed_precision(name, monkeypatch):
    # (Normalisation is tfvit.layers.LayerNorm, which computes in float32 by itself: test_layer_norm.py.)
    seen = []
    original = keras.ops.softmax

    def spy(x, *args, **kwargs):
        seen.append(("softmax", keras.backend.standardize_dtype(x.dtype)))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(keras.ops, "softmax", spy)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    make, shape = CASES[name]
    layer = make()
    if isinstance(layer, layers.MultiHeadSelfAttention):
        layer = layers.MultiHeadSelfAttention(2, use_fused_attention=False)
    layer(RNG.normal(size=shape).astype("float32"))
    assert any(op == "softmax" for op, _ in seen)
    for op, dtype in seen:
        if op == "softmax":
            assert dtype == "float32", seen


# ----------------------------------------------------------------------------------------------------------
# Every constructor argument survives get_config -> from_config.
#
# The arguments are read from the constructors (inspect.signature), following **kwargs up through tfvit's
# own base classes (e.g. FusedSelfAttention's ``key_dim``, which every attention layer takes through
# **kwargs) and stopping at Keras's classes: a tfvit layer that is a Keras layer (Dense, Conv2D,
# LayerNorm) is checked for every argument of that Keras constructor, and every layer for the base
# ``keras.layers.Layer`` arguments in LAYER_KWARGS. Each argument gets its own probe: the layer built with
# the required arguments plus that argument set to a non-default value from the tables below. The probe's
# config must hold the value under the argument's name (the Keras contract: ``from_config(config)`` is
# ``cls(**config)``), before and after build; the reloaded layer must give the same config, the same
# weights (paths, shapes, dtypes) on the same input and, with the probe's weights, the same outputs.
# An argument with no value in the tables fails its probe, naming the layer and the argument.


class Probe:
    """A table value with what it needs: companion arguments (``also``) or another input ``shape``."""

    def __init__(self, value, also=None, shape=None):
        self.value, self.also, self.shape = value, dict(also or {}), shape


class Make:
    """A table value built fresh for each probe (a layer or a Keras object that must not be shared)."""

    def __init__(self, factory):
        self.factory = factory


class Case:
    """A layer's probes: the input ``shape``, per-layer ``values`` (over VALUES), ``base`` arguments
    passed to every probe besides the required ones (when the layer needs one of several)."""

    def __init__(self, shape, values=None, base=None):
        self.shape, self.values, self.base = shape, dict(values or {}), dict(base or {})


# Non-default values by argument name, valid wherever a layer takes an argument of that name; a layer
# whose constraints need another value overrides it in its Case.
VALUES = {
    # attention and blocks
    "num_heads": 4, "key_dim": 16, "qkv_bias": False, "attention_dropout": 0.1, "projection_dropout": 0.1,
    "use_fused_attention": True, "dropout": 0.1, "drop_path": 0.1, "mlp_ratio": 2.0, "norm_epsilon": 1e-3,
    "window_size": 3, "shift_size": 1, "window": 5, "kernel_size": 3, "dilation": 2,
    "use_relative_position_bias": False, "kernel": "relu", "num_features": 16, "orthogonal": False,
    "redraw_interval": 3, "seed": 7, "rate": 0.3, "hidden_dim": 12, "out_dim": 12, "activation": "relu",
    "depth": 2, "attention": Make(lambda: layers.LocalAttention1D(2, window=3)),
    # embeddings and pooling
    "patch_size": (2, 4), "embed_dim": 12, "use_norm": True, "flatten": False, "num_prefix_tokens": 2,
    "interpolation": "bilinear", "mode": "mean",
    # Keras's Dense, Conv2D and LayerNormalization arguments
    "units": 6, "filters": 6, "strides": 2, "padding": "same", "data_format": "channels_first",
    "dilation_rate": (2, 1), "groups": 2, "use_bias": False,
    "kernel_initializer": Make(lambda: keras.initializers.HeNormal(seed=1)),
    "bias_initializer": Make(lambda: keras.initializers.Constant(0.5)),
    "beta_initializer": Make(lambda: keras.initializers.Constant(0.5)),
    "gamma_initializer": Make(lambda: keras.initializers.Constant(2.0)),
    "kernel_regularizer": Make(lambda: keras.regularizers.L2(0.01)),
    "bias_regularizer": Make(lambda: keras.regularizers.L2(0.01)),
    "beta_regularizer": Make(lambda: keras.regularizers.L2(0.01)),
    "gamma_regularizer": Make(lambda: keras.regularizers.L2(0.01)),
    "activity_regularizer": Make(lambda: keras.regularizers.L1(0.01)),
    "kernel_constraint": Make(keras.constraints.NonNeg), "bias_constraint": Make(keras.constraints.NonNeg),
    "beta_constraint": Make(keras.constraints.NonNeg), "gamma_constraint": Make(keras.constraints.NonNeg),
    "lora_rank": 2, "lora_alpha": Probe(4.0, also={"lora_rank": 2}),
    "quantization_config": Make(keras.quantizers.Int8QuantizationConfig),
    "epsilon": 1e-4, "center": False, "scale": False,
    "axis": [1],  # LayerNormalization keeps an int axis as a list once built: give the list form
}
# keras.layers.Layer's own arguments, probed on every layer (they reach it through **kwargs).
LAYER_KWARGS = {"name": "probe", "trainable": False, "dtype": "mixed_bfloat16"}

ARGUMENT_CASES = {
    "ClassToken": Case((2, 4, 8)),
    "Conv2D": Case((2, 6, 6, 4), {"kernel_size": (2, 3), "strides": (2, 1)}),
    "Dense": Case((2, 4, 8)),
    "DropPath": Case((2, 4, 8)),
    "Dropout": Case((2, 4, 8)),
    "LayerNorm": Case((2, 4, 8)),
    "LocalAttention1D": Case((2, 7, 8)),
    "MLP": Case((2, 4, 8)),
    "MultiHeadSelfAttention": Case((2, 5, 8)),
    # 36 tokens: an inferred 6 x 6 grid fits kernel_size * dilation = 6
    "NeighborhoodAttention2D": Case((2, 36, 8), {"grid_size": (4, 9)}),
    "PatchEmbedding": Case((2, 8, 8, 3)),
    "PatchMerging": Case((2, 5, 5, 8)),
    "PerformerAttention": Case((2, 5, 8)),
    "PositionEmbedding": Case((2, 7, 8), {"grid_size": (2, 3), "num_prefix_tokens": Probe(2, shape=(2, 8, 8))}),
    "SwinBlock": Case((2, 6, 6, 8)),
    # out_dim = the input width unless downsample, which halves the grid and maps 4 -> 8 channels
    "SwinStage": Case((2, 6, 6, 8), {"out_dim": 8, "drop_path": [0.1, 0.2],
                                     "downsample": Probe(True, shape=(2, 6, 6, 4))}),
    "TokenPooling": Case((2, 5, 8)),
    "TransformerBlock": Case((2, 5, 8), base={"num_heads": 2}),  # it needs num_heads or attention
    "WindowAttention": Case((3, 6, 8), {"window_size": (2, 3)}),
    "BasicBlock": Case((2, 6, 6, 4)),  # tfvit.models.resnet
}


def _public_layer_classes():
    """tfvit.layers' public layers, and the layers (not models) that tfvit.models exports."""
    from tfvit import models

    found = {name: getattr(layers, name) for name in layers.__all__ if isinstance(getattr(layers, name), type)}
    found.update({name: getattr(models, name) for name in models.__all__
                  if isinstance(getattr(models, name), type) and issubclass(getattr(models, name), keras.layers.Layer)
                  and not issubclass(getattr(models, name), keras.Model)})
    return found


LAYER_CLASSES = _public_layer_classes()


def constructor_arguments(cls):
    """{name: inspect.Parameter} of what ``cls(...)`` accepts by name, ``keras.layers.Layer``'s own
    arguments aside: the constructor's, then, while a constructor forwards **kwargs to a tfvit base
    class, that base's too. (A Keras class's signature is its whole API: its own bases' arguments, such
    as Conv2D's fixed ``rank``, are not the caller's to pass.)"""
    found = {}
    for klass in cls.__mro__:
        if klass is keras.layers.Layer or not issubclass(klass, keras.layers.Layer):
            break
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # without self
        for parameter in parameters:
            if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                found.setdefault(parameter.name, parameter)
        forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        if not forwards or not klass.__module__.startswith("tfvit."):
            break
    return found


def _arguments_to_probe():
    return [(name, argument) for name in sorted(LAYER_CLASSES)
            for argument in [*constructor_arguments(LAYER_CLASSES[name]), *LAYER_KWARGS]]


def _table_entry(name, argument):
    """The Probe for one argument of one layer; pytest.fail (naming both) when the tables have none."""
    case = ARGUMENT_CASES.get(name)
    if case is None:
        pytest.fail(f"{name} has no Case in ARGUMENT_CASES (tests/layers/test_layer_contract.py): add one.")
    if argument in case.values:
        entry = case.values[argument]
    elif argument in LAYER_KWARGS:
        entry = LAYER_KWARGS[argument]
    elif argument in VALUES:
        entry = VALUES[argument]
    else:
        pytest.fail(
            f"{name}: constructor argument {argument!r} has no value to probe its get_config round trip "
            f"with. Add a valid non-default value to VALUES, or to ARGUMENT_CASES[{name!r}] if the layer "
            f"needs its own, in tests/layers/test_layer_contract.py (and make sure get_config returns it)."
        )
    return entry if isinstance(entry, Probe) else Probe(entry)


def _fresh(value):
    return value.factory() if isinstance(value, Make) else value


def canonical(value):
    """A config value in comparable form: sequences as lists, Keras objects serialized."""
    if isinstance(value, dict):  # a serialized layer's build_config records its input, not an argument
        return {key: canonical(item) for key, item in value.items() if key != "build_config"}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, np.ndarray):
        return canonical(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return canonical(keras.saving.serialize_keras_object(value))


def _config_value(argument, value):
    """What the config holds for ``argument``, in the form the argument was given."""
    if argument == "dtype":
        return keras.dtype_policies.get(value).name
    return canonical(value)


def _weights(layer):
    return sorted((w.path, tuple(w.shape), keras.backend.standardize_dtype(w.dtype)) for w in layer.weights)


def test_every_layer_has_argument_probes():
    assert set(ARGUMENT_CASES) == set(LAYER_CLASSES), (
        "ARGUMENT_CASES must cover exactly the public layers of tfvit.layers and tfvit.models: missing "
        f"{sorted(set(LAYER_CLASSES) - set(ARGUMENT_CASES))}, stale {sorted(set(ARGUMENT_CASES) - set(LAYER_CLASSES))}."
    )


def test_argument_tables_name_real_arguments():
    taken = {argument for cls in LAYER_CLASSES.values() for argument in constructor_arguments(cls)}
    assert not set(VALUES) - taken, f"VALUES entries no layer takes: {sorted(set(VALUES) - taken)}"
    for name, case in ARGUMENT_CASES.items():
        own = set(constructor_arguments(LAYER_CLASSES[name])) | set(LAYER_KWARGS)
        assert not (set(case.values) | set(case.base)) - own, f"{name}: values for arguments it does not take"


def test_constructor_arguments_follow_kwargs_into_tfvit_bases():
    assert "key_dim" in constructor_arguments(layers.MultiHeadSelfAttention)  # FusedSelfAttention's
    assert "rate" in constructor_arguments(layers.DropPath)  # inherited constructor
    assert "lora_alpha" in constructor_arguments(layers.Dense)  # keras.layers.Dense's
    assert "rank" not in constructor_arguments(layers.Conv2D)  # Keras's BaseConv: not the caller's


@pytest.mark.parametrize("name, argument", _arguments_to_probe())
def test_every_constructor_argument_round_trips(name, argument):
    cls, case = LAYER_CLASSES[name], ARGUMENT_CASES[name]
    parameters = constructor_arguments(cls)
    probe = _table_entry(name, argument)
    default = parameters[argument].default if argument in parameters else inspect.Parameter.empty
    value = _fresh(probe.value)
    if default is not inspect.Parameter.empty:
        assert canonical(value) != canonical(default), (
            f"the table's value for {name}({argument}=...) is its default {default!r}: it would test nothing")
    kwargs = {arg: _fresh(_table_entry(name, arg).value) for arg, p in parameters.items()
              if p.default is inspect.Parameter.empty}
    kwargs.update(case.base)
    kwargs.update({arg: _fresh(v) for arg, v in probe.also.items()})
    kwargs[argument] = value
    expected = _config_value(argument, value)

    layer = cls(**kwargs)
    config = layer.get_config()
    assert argument in config, (
        f"{name}.get_config() drops constructor argument {argument!r}: from_config would rebuild the layer "
        f"with {argument}={default!r} instead of {value!r}.")
    assert _config_value(argument, config[argument]) == expected, (
        f"{name}.get_config()[{argument!r}] = {config[argument]!r}, but the layer was built with {value!r}.")
    clone = cls.from_config(config)
    assert canonical(clone.get_config()) == canonical(config), f"{name}: from_config(get_config()) changes the config"

    x = RNG.normal(size=probe.shape or case.shape).astype("float32")
    out = layer(x)
    clone(x)
    assert _weights(clone) == _weights(layer), f"{name}({argument}={value!r}): the reloaded layer's weights differ"
    built_config = layer.get_config()
    assert _config_value(argument, built_config.get(argument)) == expected, (
        f"{name}: once built, get_config()[{argument!r}] = {built_config.get(argument)!r}, not {value!r}.")
    assert canonical(clone.get_config()) == canonical(built_config)
    clone.set_weights(layer.get_weights())
    as_float32 = lambda t: keras.ops.convert_to_numpy(keras.ops.cast(t, "float32"))
    np.testing.assert_allclose(as_float32(clone(x)), as_float32(out), rtol=1e-6, atol=1e-6,
                               err_msg=f"{name}({argument}={value!r}): the reloaded layer computes another function")
