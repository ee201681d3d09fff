"""tfvit's stochastic layers draw per example: the numbers against a scalar re-implementation of the
documented hash, and the property gradient accumulation needs, that an example's mask does not depend
on how its batch is split into calls."""

import keras
import numpy as np
import pytest

import tfvit
from tests.reference import keyed_uniform, lowbias32
from tfvit.layers import DropPath, Dropout, keyed_random


def test_lowbias32_matches_its_definition_on_known_values():
    values = np.array([0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF, 123456789], np.uint32)
    got = keras.ops.convert_to_numpy(keyed_random.lowbias32(keras.ops.convert_to_tensor(values)))
    np.testing.assert_array_equal(got, lowbias32(values))
    assert lowbias32(np.uint32(0)) == 0 and len(set(lowbias32(values[1:]).tolist())) == 5


def test_uniform_inside_a_scope_is_the_documented_function_of_seed_update_example_element():
    seed, update = 17, 5
    # 8 rows = 4 examples x 2 rows each (e.g. windows), 8 elements per row (square on purpose: Keras's
    # ops.add broadcasts an (R, 1) term along the wrong axis of an R x R tensor).
    with keyed_random.example_keyed_draws(update, first_example=10, num_examples=4):
        got = keras.ops.convert_to_numpy(keyed_random.uniform((8, 2, 4), seed, None))
    want = np.empty((8, 8))
    for row in range(8):
        for k in range(8):
            want[row, k] = keyed_uniform(seed, update, 10 + row // 2, row % 2, k)
    np.testing.assert_allclose(got.reshape(8, 8), want, rtol=0, atol=0)


def split_calls(layer, x, update, pieces):
    """The layer on the whole batch in one scope, and on consecutive pieces, each in its own scope."""
    with keyed_random.example_keyed_draws(update, 0, len(x)):
        whole = keras.ops.convert_to_numpy(layer(x, training=True))
    parts, start = [], 0
    for size in pieces:
        with keyed_random.example_keyed_draws(update, start, size):
            parts.append(keras.ops.convert_to_numpy(layer(x[start:start + size], training=True)))
        start += size
    return whole, np.concatenate(parts)


@pytest.mark.parametrize("layer", [Dropout(0.3, seed=4), DropPath(0.3, seed=4)], ids=["dropout", "drop_path"])
def test_an_example_gets_the_same_mask_whole_or_in_micro_batches(layer):
    x = np.ones((12, 5, 3), "float32")
    whole, parts = split_calls(layer, x, update=7, pieces=(3, 3, 4, 2))
    np.testing.assert_array_equal(whole, parts)
    assert 0 < (whole == 0).mean() < 0.6  # something was dropped, not everything


def test_masks_change_with_the_update_the_layer_and_the_example():
    x = np.ones((64, 8, 8), "float32")
    draw = lambda layer, update: split_calls(layer, x, update, (64,))[0]
    first, layer = draw(Dropout(0.5, seed=1), 0), Dropout(0.5, seed=1)
    np.testing.assert_array_equal(first, draw(layer, 0))        # same key: same masks
    assert (first != draw(layer, 1)).mean() > 0.4               # next update: new masks (half differ)
    assert (first != draw(Dropout(0.5, seed=2), 0)).mean() > 0.4  # another layer: new masks
    assert (first[0] != first[1]).mean() > 0.4                   # another example: new masks


def test_keep_mask_keeps_exactly_where_the_uniform_is_below_the_keep_probability():
    with keyed_random.example_keyed_draws(4, 0, 64):
        u = keras.ops.convert_to_numpy(keyed_random.uniform((64, 100), 8, None))
        mask = keras.ops.convert_to_numpy(keyed_random.keep_mask((64, 100), 0.3, 8, None, "float32"))
    np.testing.assert_array_equal(mask != 0, u < 0.7)
    np.testing.assert_allclose(mask[mask != 0], 1 / 0.7, rtol=1e-7)


def test_keep_rate_and_expectation_over_many_draws():
    rate, shape = 0.2, (2000, 50)
    with keyed_random.example_keyed_draws(3, 0, shape[0]):
        out = keras.ops.convert_to_numpy(Dropout(rate, seed=9)(np.ones(shape, "float32"), training=True))
    kept = out != 0
    # Binomial(100000, 0.8): standard deviation 0.0013 of the kept fraction; 5 sigma.
    assert abs(kept.mean() - (1 - rate)) < 0.0065
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)
    # Neighbouring elements and examples are not correlated (|r| < 5 / sqrt(n)).
    a = kept[:, :-1].ravel().astype(float)
    assert abs(np.corrcoef(a, kept[:, 1:].ravel())[0, 1]) < 5 / np.sqrt(a.size)
    assert abs(np.corrcoef(kept[:-1].ravel(), kept[1:].ravel())[0, 1]) < 5 / np.sqrt(a.size)


def test_outside_a_train_step_each_call_draws_anew_from_the_seed_generator():
    layer = Dropout(0.5, seed=3)
    x = np.ones((16, 32), "float32")
    first, second = (keras.ops.convert_to_numpy(layer(x, training=True)) for _ in range(2))
    assert (first != second).mean() > 0.4
    again = Dropout(0.5, seed=3)  # same seed, fresh generator: the same sequence
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x, training=True)), first)


def test_seed_is_kept_in_the_config_and_rebuilds_the_same_masks():
    layer = DropPath(0.4)
    clone = DropPath.from_config(layer.get_config())
    assert clone.seed == layer.seed
    x = np.ones((32, 2), "float32")
    with keyed_random.example_keyed_draws(2, 0, 32):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=True)),
                                      keras.ops.convert_to_numpy(clone(x, training=True)))


def test_inference_is_the_identity_and_bad_arguments_raise():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(Dropout(0.5)(x, training=False)), x)
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="seed"):
        Dropout(0.1, seed=-1)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_masks_are_the_same_under_mixed_precision(policy):
    x = np.ones((8, 6), "float32")
    full = split_calls(Dropout(0.3, seed=5), x, 1, (8,))[0]
    keras.mixed_precision.set_global_policy(policy)
    low = split_calls(Dropout(0.3, seed=5), x, 1, (8,))[0]
    np.testing.assert_array_equal(full == 0, low == 0)


def stochastic_layer_seeds(model):
    kinds = (Dropout, DropPath, tfvit.layers.PerformerAttention)
    return [(layer.name, layer.seed) for layer in model._flatten_layers() if isinstance(layer, kinds)]


@pytest.mark.parametrize("make", [
    lambda **k: tfvit.models.SwinTransformer(image_size=8, patch_size=2, in_channels=1, embed_dim=8, depths=(2,),
                                             num_heads=(2,), window_size=2, num_classes=3, dropout=0.1, **k),
    lambda **k: tfvit.models.VisionTransformer(image_size=8, patch_size=2, in_channels=1, embed_dim=8, depth=2,
                                               num_heads=2, num_classes=3, attention="performer_softmax",
                                               attention_kwargs={"redraw_interval": 5}, **k),
], ids=["swin", "performer_vit"])
def test_a_model_rebuilt_from_its_config_gives_its_layers_the_same_seeds(make):
    model = make()
    seeds = stochastic_layer_seeds(model)
    assert len(seeds) >= 6 and len({seed for _, seed in seeds}) == len(seeds)  # one seed per layer
    assert stochastic_layer_seeds(type(model).from_config(model.get_config())) == seeds
    assert stochastic_layer_seeds(make(seed=5)) == stochastic_layer_seeds(make(seed=5))
    assert stochastic_layer_seeds(make(seed=5)) != stochastic_layer_seeds(make(seed=6))
