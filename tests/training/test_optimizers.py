import re

import keras
import numpy as np
import pytest

from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer
from tfvit.training.optimizers import DEFAULT_NO_DECAY, _last_component, build_optimizer

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


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "lamb"}, "name.*'lamb'"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"name": "sgd", "momentum": 1.0}, "momentum"),
    ({"clipnorm": 0.0}, "clipnorm"),
    ({"beta_2": 1.0}, "beta_2"),
    ({"exclude_from_weight_decay": "bias"}, "the string 'bias'"),
    ({"exclude_from_weight_decay": ["blocks.0/norm1/gamma"]}, "path"),
])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(**kwargs)


# --- per-variable learning-rate multipliers ---

MULTIPLIERS = {"a/kernel": 0.5, "b/*": 0.25}  # a/bias matches nothing: multiplier 1


def two_dense_model():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="b")(keras.layers.Dense(4, name="a")(inputs))
    return keras.Model(inputs, outputs)


def gradient_sequence(model, steps, seed=0):
    """Gradients of a squared loss at each step's weights, computed apart from the optimizer."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 2)).astype("float32")
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.mean((model(x) - y) ** 2) * (1 + steps)
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def run_steps(optimizer, steps=2, seed=0):
    """Apply ``steps`` updates; return (weights before each step, gradients of each step, final weights)."""
    keras.utils.set_random_seed(seed)
    model = two_dense_model()
    for v in model.trainable_variables:  # non-zero biases, so that their (absent) decay would show
        v.assign(np.random.default_rng(seed + 1).uniform(-1, 1, v.shape).astype("float32"))
    history = []
    for step in range(steps):
        grads = gradient_sequence(model, step, seed=step)
        history.append(({v.path: v.numpy().astype(np.float64) for v in model.trainable_variables},
                         dict(zip([v.path for v in model.trainable_variables], grads))))
        optimizer.apply(grads, model.trainable_variables)
    return history, {v.path: v.numpy() for v in model.trainable_variables}


def test_adamw_scales_each_variables_update_and_decay():
    lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-8
    history, final = run_steps(build_optimizer("adamw", lr, weight_decay=wd, lr_multipliers=MULTIPLIERS), steps=2)
    rates = {"a/kernel": lr * 0.5, "a/bias": lr, "b/kernel": lr * 0.25, "b/bias": lr * 0.25}
    w = dict(history[0][0])
    m = {p: 0.0 for p in w}
    v = {p: 0.0 for p in w}
    for t, (_, grads) in enumerate(history, start=1):
        for p, g in grads.items():  # Kingma & Ba's Algorithm 1 with epsilon-hat, decay decoupled first
            if p.endswith("kernel"):
                w[p] = w[p] - rates[p] * wd * w[p]
            m[p] = b1 * m[p] + (1 - b1) * g
            v[p] = b2 * v[p] + (1 - b2) * g * g
            w[p] = w[p] - rates[p] * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[p] / (np.sqrt(v[p]) + eps)
    for p, expected in w.items():
        np.testing.assert_allclose(final[p], expected, rtol=1e-5, atol=1e-6, err_msg=p)


def test_sgd_scales_each_variables_update_and_decay():
    lr, wd, momentum = 0.1, 0.5, 0.9
    optimizer = build_optimizer("sgd", lr, weight_decay=wd, momentum=momentum, lr_multipliers=MULTIPLIERS)
    history, final = run_steps(optimizer, steps=2)
    rates = {"a/kernel": lr * 0.5, "a/bias": lr, "b/kernel": lr * 0.25, "b/bias": lr * 0.25}
    w = dict(history[0][0])
    velocity = {p: 0.0 for p in w}
    for _, grads in history:
        for p, g in grads.items():  # Keras's SGD: v <- mu v - lr g; w <- w + v, after the decoupled decay
            if p.endswith("kernel"):
                w[p] = w[p] - rates[p] * wd * w[p]
            velocity[p] = momentum * velocity[p] - rates[p] * g
            w[p] = w[p] + velocity[p]
    for p, expected in w.items():
        np.testing.assert_allclose(final[p], expected, rtol=1e-5, atol=1e-6, err_msg=p)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_unit_multipliers_give_exactly_the_plain_optimizer(name):
    _, plain = run_steps(build_optimizer(name, 0.1, weight_decay=0.5), steps=3)
    _, ones = run_steps(build_optimizer(name, 0.1, weight_decay=0.5, lr_multipliers={"*": 1.0}), steps=3)
    _, scaled = run_steps(build_optimizer(name, 0.1, weight_decay=0.5, lr_multipliers={"*": 0.5}), steps=3)
    for p in plain:
        np.testing.assert_array_equal(ones[p], plain[p])
        assert not np.allclose(scaled[p], plain[p])


def test_exact_paths_win_then_the_first_matching_pattern():
    optimizer = build_optimizer("adamw", lr_multipliers={"b/*": 0.25, "*/kernel": 3.0, "a/kernel": 0.5})
    assert optimizer.learning_rate_multiplier("a/kernel") == 0.5
    assert optimizer.learning_rate_multiplier("b/kernel") == 0.25
    assert optimizer.learning_rate_multiplier("c/kernel") == 3.0
    assert optimizer.learning_rate_multiplier("a/bias") == 1.0
    assert list(optimizer.lr_multipliers) == ["b/*", "*/kernel", "a/kernel"]
    assert build_optimizer("sgd").lr_multipliers == {}


def fit_one_step(multipliers=None, policy="float32", jit_compile=False, accumulate=1):
    """(weight changes of one SGD step of a tiny ViT on a fixed batch of 8, the compiled optimizer)."""
    from tfvit.training import GradientAccumulationModel

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(7)
    model = tiny_vit()
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    trainer = GradientAccumulationModel(model, accumulate) if accumulate > 1 else model
    optimizer = build_optimizer("sgd", 0.5, weight_decay=0.05, lr_multipliers=multipliers)
    if policy == "mixed_float16":
        # Keras's default first scale, 2^15, overflows this model's float16 gradients and skips the step.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=16.0)
    trainer.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    jit_compile=jit_compile)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 8, 8, 1)).astype("float32"), np.arange(8) % 3
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}, trainer.optimizer


_PLAIN_STEPS = {}


@pytest.mark.parametrize("policy, jit_compile, accumulate", [
    ("float32", True, 1), ("float32", False, 2), ("mixed_float16", False, 1), ("mixed_bfloat16", False, 1)])
def test_multipliers_scale_the_compiled_update(policy, jit_compile, accumulate):
    """A first SGD update (momentum and decoupled decay included) is linear in the rate: with multiplier m
    it is m times the plain one. The reference is a plain model on the full batch, without XLA or
    accumulation. (Not Adam: its first step, lr g / (|g| + eps), turns the rounding noise of gradients
    that are zero in exact arithmetic, such as the key bias's, into steps of any sign.)"""
    from tfvit.training.finetune import layer_decay_multipliers

    keras.mixed_precision.set_global_policy(policy)
    multipliers = layer_decay_multipliers(tiny_vit(), 0.5)  # 0.25 (embedding), 0.5 (block), 1 (norm, head)
    assert sorted(set(multipliers.values())) == [0.25, 0.5, 1.0]
    if policy not in _PLAIN_STEPS:
        _PLAIN_STEPS[policy] = fit_one_step(policy=policy)[0]
    plain = _PLAIN_STEPS[policy]
    scaled, optimizer = fit_one_step(multipliers, policy, jit_compile, accumulate)
    if policy == "mixed_float16":
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert optimizer.inner_optimizer.lr_multipliers == multipliers
    for path, delta in plain.items():
        if path.endswith("kernel"):  # decayed, so moved, unless a loss-scale overflow skipped the step
            assert np.abs(delta).max() > 1e-4, f"{path} did not move: the step was skipped"
        np.testing.assert_allclose(scaled[path], multipliers[path] * delta, rtol=1e-3, atol=1e-6, err_msg=path)


@pytest.mark.filterwarnings("ignore:Skipping variable loading")
def test_multipliers_survive_save_and_resume(tmp_path):
    from tfvit.training.finetune import layer_decay_multipliers

    model = tiny_vit()
    multipliers = layer_decay_multipliers(model, 0.5)
    model.compile(optimizer=build_optimizer("adamw", 1e-2, weight_decay=0.05, lr_multipliers=multipliers),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 8, 8, 1)).astype("float32"), np.arange(4) % 3
    model.fit(x, y, batch_size=4, verbose=0)
    model.save(tmp_path / "vit.keras")
    restored = keras.saving.load_model(tmp_path / "vit.keras")
    assert restored.optimizer.lr_multipliers == multipliers
    assert int(restored.optimizer.iterations.numpy()) == 1
    for m in (model, restored):
        m.fit(x[::-1], y[::-1], batch_size=4, verbose=0, shuffle=False)
    for a, b in zip(model.trainable_variables, restored.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize("multipliers, match", [
    ("blocks.0/*", "lr_multipliers must be a mapping"),
    ([("blocks.0/*", 0.5)], "lr_multipliers must be a mapping"),
    ({"head/*": -1.0}, r"lr_multipliers\['head/\*'\] must be a finite float >= 0, got -1.0"),
    ({"head/*": float("nan")}, "finite float"),
    ({"head/*": True}, "finite float"),
    ({"": 1.0}, "non-empty strings"),
    ({3: 1.0}, "non-empty strings"),
])
def test_rejects_bad_multipliers(multipliers, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer("adamw", lr_multipliers=multipliers)
