import math

import keras
import numpy as np
import pytest

from tfvit.training.schedules import (
    WarmupCosineDecay,
    scaled_learning_rate,
    steps_per_epoch,
)


def closed_form(s, peak, total, warmup, floor):
    """The documented schedule, written independently of the implementation (plain Python floats)."""
    if s < warmup:
        return peak * (s + 1) / warmup
    if s >= total:
        return floor
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))


def values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


@pytest.mark.parametrize("warmup,floor", [(0, 0.0), (5, 0.0), (7, 1e-5), (20, 1e-4)])
def test_matches_closed_form(warmup, floor):
    peak, total = 1e-3, 20
    schedule = WarmupCosineDecay(peak, total, warmup_steps=warmup, min_learning_rate=floor)
    steps = list(range(0, 26))
    expected = [closed_form(s, peak, total, warmup, floor) for s in steps]
    np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-5, atol=1e-9)


def test_landmarks():
    schedule = WarmupCosineDecay(0.1, 110, warmup_steps=10, min_learning_rate=0.001)
    got = dict(zip([0, 9, 10, 60, 110, 10_000], values(schedule, [0, 9, 10, 60, 110, 10_000])))
    assert got[0] == pytest.approx(0.01)             # first update already moves: peak / warmup
    assert got[9] == pytest.approx(0.1)              # peak reached by the last warmup update
    assert got[10] == pytest.approx(0.1)             # cosine starts at the peak
    assert got[60] == pytest.approx((0.1 + 0.001) / 2, rel=1e-5)  # halfway down
    assert got[110] == pytest.approx(0.001)
    assert got[10_000] == pytest.approx(0.001)       # flat at the floor afterwards
    warm = values(schedule, range(10))
    assert np.all(np.diff(warm) > 0) and np.all(np.diff(values(schedule, range(10, 111))) <= 0)


def test_all_warmup():
    schedule = WarmupCosineDecay(1.0, 4, warmup_steps=4, min_learning_rate=0.5)
    np.testing.assert_allclose(values(schedule, range(6)), [0.25, 0.5, 0.75, 1.0, 0.5, 0.5], rtol=1e-6)


def test_accepts_integer_tensor_steps():
    schedule = WarmupCosineDecay(1e-3, 100, warmup_steps=10)
    step = keras.Variable(3, dtype="int64", trainable=False)
    assert float(schedule(step)) == pytest.approx(4e-4)


def test_warmup_counts_optimizer_updates():
    """Keras calls the schedule with optimizer.iterations: one count per apply, i.e. per update."""
    schedule = WarmupCosineDecay(0.5, 8, warmup_steps=4)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    w = keras.Variable(np.zeros(()), dtype="float32")
    applied = []
    for _ in range(10):
        before = float(w.numpy())
        optimizer.apply([keras.ops.ones(())], [w])  # gradient 1: w moves by -lr
        applied.append(before - float(w.numpy()))
    np.testing.assert_allclose(applied, [closed_form(u, 0.5, 8, 4, 0.0) for u in range(10)], rtol=1e-5, atol=1e-7)


def test_serialization_round_trip():
    original = WarmupCosineDecay(3e-4, 500, warmup_steps=50, min_learning_rate=1e-6)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(original))
    assert type(restored) is type(original)
    assert restored.get_config() == original.get_config()
    steps = [0, 49, 50, 51, 300, 499, 500, 2000]
    np.testing.assert_allclose(values(restored, steps), values(original, steps), rtol=0, atol=0)


def test_saved_in_compiled_model(tmp_path):
    schedule = WarmupCosineDecay(1e-2, 40, warmup_steps=5, min_learning_rate=1e-4)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule), loss="mse")
    model.fit(np.ones((8, 3)), np.zeros((8, 2)), batch_size=4, epochs=2, verbose=0)  # 4 updates
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    lr = restored.optimizer._learning_rate  # the schedule object itself (Keras keeps no public handle)
    assert isinstance(lr, WarmupCosineDecay) and lr.get_config() == schedule.get_config()
    assert int(restored.optimizer.iterations) == 4
    assert float(restored.optimizer.learning_rate) == pytest.approx(closed_form(4, 1e-2, 40, 5, 1e-4))


@pytest.mark.parametrize("kwargs,match", [
    (dict(peak_learning_rate=0.0, total_steps=10), "peak_learning_rate"),
    (dict(peak_learning_rate=float("nan"), total_steps=10), "peak_learning_rate"),
    (dict(peak_learning_rate=1e-3, total_steps=0), "total_steps"),
    (dict(peak_learning_rate=1e-3, total_steps=10.0), "total_steps"),
    (dict(peak_learning_rate=1e-3, total_steps=10, warmup_steps=-1), "warmup_steps"),
    (dict(peak_learning_rate=1e-3, total_steps=10, warmup_steps=11), "warmup_steps=11"),
    (dict(peak_learning_rate=1e-3, total_steps=10, min_learning_rate=-1e-5), "min_learning_rate"),
    (dict(peak_learning_rate=1e-3, total_steps=10, min_learning_rate=1e-2), "min_learning_rate"),
])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupCosineDecay(**kwargs)


def test_scaled_learning_rate():
    assert scaled_learning_rate(5e-4, 1024, 512, "linear") == pytest.approx(1e-3)  # DeiT's rule
    assert scaled_learning_rate(5e-4, 128, 512) == pytest.approx(1.25e-4)           # linear by default
    assert scaled_learning_rate(0.1, 1024, 256, "sqrt") == pytest.approx(0.2)
    assert scaled_learning_rate(0.1, 64, 256, "none") == 0.1
    with pytest.raises(ValueError, match="scaling.*'cubic'"):
        scaled_learning_rate(0.1, 64, 256, "cubic")
    with pytest.raises(ValueError, match="batch_size"):
        scaled_learning_rate(0.1, 0, 256)


def test_steps_per_epoch():
    assert steps_per_epoch(50_000, 128) == 391
    assert steps_per_epoch(50_000, 128, drop_remainder=True) == 390
    assert steps_per_epoch(512, 128) == steps_per_epoch(512, 128, drop_remainder=True) == 4
    with pytest.raises(ValueError, match="no batch"):
        steps_per_epoch(10, 64, drop_remainder=True)
