import re

import keras
import numpy as np
import pytest

from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer
from tfvit.training.optimizers import DEFAULT_NO_DECAY, _last_component, build_optimizer
from tfvit.training.schedules import PerUpdateSchedule, WarmupCosineDecay

LR, WD = 0.1, 0.5  # one decayed update multiplies a weight by 1 - LR * WD = 0.95


def tiny_vit():
    model = VisionTransformer(image_size=8, patch_size=4, in_channels=1, num_classes=3, embed_dim=8, depth=1,
                              num_heads=2)
    model(np.zeros((1, 8, 8, 1), "float32"))
    return model


def tiny_swin():
    model = SwinTransformer(image_size=8, patch_size=2, in_channels=1, num_classes=3, embed_dim=8, depths=(1,),
                            num_heads=(2,), window_size=2)
    model(np.zeros((1, 8, 8, 1), "float32"))
    return model


def decayed_paths(model, optimizer):
    """Apply one update with zero gradients: only weight decay can move a variable."""
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # non-zero everywhere, so that decay is visible on biases too
        v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply([keras.ops.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    decayed = set()
    for v in model.trainable_variables:
        after = v.numpy()
        if np.allclose(after, before[v.path] * (1 - LR * WD), rtol=1e-6):
            decayed.add(v.path)
        else:
            np.testing.assert_array_equal(after, before[v.path], err_msg=f"{v.path} moved but not by decay")
    return decayed


def timm_rule(model):
    """timm's independent criterion: decay only >= 2-D weights, minus its no_weight_decay names."""
    return {v.path for v in model.trainable_variables
            if len(v.shape) >= 2 and v.name not in {"pos_embed", "cls_token", "relative_position_bias_table"}}


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_vit_decays_only_matrices(name):
    model = tiny_vit()
    decayed = decayed_paths(model, build_optimizer(name, LR, weight_decay=WD))
    assert decayed == {
        "patch_embed/proj/kernel", "blocks.0/attn/qkv/kernel", "blocks.0/attn/proj/kernel",
        "blocks.0/mlp/fc1/kernel", "blocks.0/mlp/fc2/kernel", "head/kernel",
    }
    assert decayed == timm_rule(model)
    # The paths that the exclusions were written for really are present and left alone.
    paths = {v.path for v in model.trainable_variables}
    for kept in ("pos_embed/pos_embed", "cls_token/cls_token", "blocks.0/norm1/gamma", "blocks.0/norm1/beta",
                 "blocks.0/attn/qkv/bias", "head/bias"):
        assert kept in paths and kept not in decayed


def test_swin_keeps_relative_position_bias_table():
    model = tiny_swin()
    decayed = decayed_paths(model, build_optimizer("adamw", LR, weight_decay=WD))
    tables = {v.path for v in model.trainable_variables if v.name == "relative_position_bias_table"}
    assert tables and not tables & decayed
    assert decayed == timm_rule(model)


def test_without_exclusions_everything_decays():
    model = tiny_vit()
    decayed = decayed_paths(model, build_optimizer("adamw", LR, weight_decay=WD, exclude_from_weight_decay=()))
    assert decayed == {v.path for v in model.trainable_variables}


def test_names_match_whole_names_only():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="fc")(inputs)

    class Scale(keras.layers.Layer):  # a weight whose name merely contains "beta"
        def build(self, shape):
            self.beta_scale = self.add_weight(name="beta_scale", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.beta_scale

    model = keras.Model(inputs, Scale(name="scale")(x))
    decayed = decayed_paths(model, build_optimizer("adamw", LR, weight_decay=WD))
    assert decayed == {"fc/kernel", "scale/beta_scale"}


@pytest.mark.parametrize("seen,excluded", [
    ("gamma", True),                      # JAX and torch: Keras compares the bare name
    ("blocks.0/norm1/gamma:0", True),     # TensorFlow: the tf.Variable's name, the path plus ":0"
    ("layers.0/blocks.1/attn/relative_position_bias_table:0", True),
    ("blocks.0/norm1/gamma/replica_1:0", True),  # tf.distribute: another replica's copy
    ("gamma_proj/kernel:0", False), ("blocks.0/gamma2:0", False), ("beta_scale", False),
])
def test_exclusion_patterns_cover_both_name_forms(seen, excluded):
    pattern = "|".join(_last_component(n) for n in DEFAULT_NO_DECAY)  # as Keras joins them
    assert (re.search(pattern, seen) is not None) == excluded


@pytest.mark.filterwarnings("ignore:Skipping variable loading")
def test_exclusions_survive_save_and_load(tmp_path):
    model = tiny_vit()
    # Unbuilt (no fit): Adam moments from a step would move weights too; only the config is at stake.
    model.compile(optimizer=build_optimizer("adamw", LR, weight_decay=WD), loss="mse")
    model.save(tmp_path / "vit.keras")
    restored = keras.saving.load_model(tmp_path / "vit.keras")
    assert isinstance(restored.optimizer, keras.optimizers.AdamW)
    assert restored.optimizer.no_decay_names == DEFAULT_NO_DECAY
    assert decayed_paths(restored, restored.optimizer) == timm_rule(restored)


def test_settings_reach_keras():
    adamw = build_optimizer("AdamW", 3e-4, clipnorm=1.0)
    assert isinstance(adamw, keras.optimizers.AdamW)
    assert adamw.weight_decay == 0.05 and adamw.clipnorm == 1.0 and adamw.epsilon == 1e-8
    sgd = build_optimizer("sgd", 0.1, momentum=0.8, nesterov=True)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.weight_decay == 1e-4 and sgd.momentum == 0.8 and sgd.nesterov
    assert build_optimizer("sgd", 0.1, weight_decay=0.0).no_decay_names == ()


def test_keras_accumulation_gets_a_per_update_schedule():
    """Keras calls schedules with micro-steps under gradient_accumulation_steps; build_optimizer corrects it."""
    schedule = WarmupCosineDecay(1.0, 10, warmup_steps=4)

    def rates_of_updates(optimizer, updates=4, steps=2):
        w = keras.Variable(np.zeros(()), dtype="float32")
        moves = []
        for _ in range(updates * steps):
            before = float(w.numpy())
            optimizer.apply([keras.ops.ones(())], [w])
            moves.append(before - float(w.numpy()))
        return np.reshape(moves, (updates, steps))[:, -1]

    expected = [float(schedule(u)) for u in range(4)]
    raw = keras.optimizers.SGD(learning_rate=schedule, gradient_accumulation_steps=2)
    # The Keras behaviour that makes the wrapper necessary: update u would use lr(2u + 1).
    np.testing.assert_allclose(rates_of_updates(raw), [float(schedule(2 * u + 1)) for u in range(4)], rtol=1e-6)
    built = build_optimizer("sgd", schedule, momentum=0.0, weight_decay=0.0, gradient_accumulation_steps=2)
    assert isinstance(built._learning_rate, PerUpdateSchedule)
    np.testing.assert_allclose(rates_of_updates(built), expected, rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="lamb"), "name.*'lamb'"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(name="sgd", momentum=1.0), "momentum"),
    (dict(clipnorm=0.0), "clipnorm"),
    (dict(beta_2=1.0), "beta_2"),
    (dict(exclude_from_weight_decay="bias"), "the string 'bias'"),
    (dict(exclude_from_weight_decay=["blocks.0/norm1/gamma"]), "path"),
    (dict(gradient_accumulation_steps=0), "gradient_accumulation_steps"),
])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(**kwargs)
