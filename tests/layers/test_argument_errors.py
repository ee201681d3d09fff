"""A misspelled or unknown keyword argument to any public tfvit layer is a TypeError (Python's error for an unexpected
keyword; Keras's own would be a ValueError listing the leftovers) that names it and suggests the argument it
resembles, and keras.layers.Layer's own arguments keep working (issue 16). The layers and their required arguments
are those of the contract tests (tests/layers/test_layer_contract.py)."""

import warnings

import keras
import pytest

from tests.layers.test_layer_contract import ARGUMENT_CASES, LAYER_CLASSES, _fresh, _table_entry, constructor_arguments
from tfvit import _validation as check


def _required(name):
    cls, case = LAYER_CLASSES[name], ARGUMENT_CASES[name]
    kwargs = {arg: _fresh(_table_entry(name, arg).value) for arg, p in constructor_arguments(cls).items()
              if p.default is p.empty}
    kwargs.update(case.base)
    return kwargs


def _misspellings():
    """(layer, argument, misspelling): each constructor argument without its last letter, and Keras's trainable."""
    cases = []
    for name in sorted(LAYER_CLASSES):
        accepted = check.constructor_arguments(LAYER_CLASSES[name])
        for argument in [*constructor_arguments(LAYER_CLASSES[name]), "trainable"]:
            typo = argument[:-1] if argument != "trainable" else "trainabel"
            if typo not in accepted:
                cases.append((name, argument, typo))
    return cases


@pytest.mark.parametrize("name, argument, typo", _misspellings())
def test_a_misspelled_argument_is_named_with_the_one_it_resembles(name, argument, typo):
    with pytest.raises(TypeError) as raised:
        LAYER_CLASSES[name](**_required(name), **{typo: _fresh(_table_entry(name, argument).value)
                                                  if argument != "trainable" else False})
    message = str(raised.value)
    assert message.startswith(f"{name}: unknown argument {typo!r}; did you mean "), message
    assert f"{argument!r}" in message.split("did you mean", 1)[1], message


@pytest.mark.parametrize("name", sorted(LAYER_CLASSES))
def test_an_unrelated_argument_lists_what_the_layer_takes(name):
    with pytest.raises(TypeError, match=rf"^{name}: unknown argument 'zzz'\. It takes: .*dtype.*trainable"):
        LAYER_CLASSES[name](**_required(name), zzz=1)
    with pytest.raises(TypeError, match=rf"^{name}: unknown arguments 'zzz', 'trainabel' \(did you mean 'trainable'"):
        LAYER_CLASSES[name](**_required(name), zzz=1, trainabel=False)


@pytest.mark.parametrize("name", sorted(LAYER_CLASSES))
def test_keras_layer_arguments_keep_working(name):
    """keras.layers.Layer.__init__'s arguments (read from its signature) reach Keras as before."""
    layer = LAYER_CLASSES[name](**_required(name), name="probe", trainable=False, dtype="float32", autocast=False,
                                activity_regularizer=keras.regularizers.L1(0.01))
    assert (layer.name, layer.trainable, layer.autocast) == ("probe", False, False)
    assert layer.activity_regularizer is not None
    with warnings.catch_warnings(record=True) as caught:  # deprecated by Keras, which warns, but accepted
        warnings.simplefilter("always")
        LAYER_CLASSES[name](**_required(name), input_shape=(4, 8))
    assert any("input_shape" in str(w.message) for w in caught)


def test_keras_arguments_are_read_from_keras():
    layer_arguments = {"activity_regularizer", "trainable", "dtype", "autocast", "name", "input_shape", "input_dim"}
    from tfvit import layers, models

    assert check.keras_arguments(layers.MLP) == layer_arguments
    assert check.keras_arguments(models.VisionTransformer) == layer_arguments  # + the functional Model's trainable
    assert {"units", "lora_alpha", "kernel_initializer"} <= check.keras_arguments(layers.Dense)
    assert "rank" not in check.keras_arguments(layers.Conv2D)  # Keras's BaseConv fixes it for Conv2D
    # Popped from **kwargs in Keras's constructor body, not in its signature.
    assert "rms_scaling" in check.keras_arguments(layers.LayerNorm)
    with pytest.warns(UserWarning, match="rms_scaling"):  # Keras deprecates it, and still takes it
        assert layers.LayerNorm(rms_scaling=True).get_config()["rms_scaling"] is True
