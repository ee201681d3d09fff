import csv
import glob
import json
import math
import os
import time
from collections import defaultdict

import keras
import numpy as np
import psutil
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from tfvit.training import StepScalars, TrainingSpeed, log_hparams, standard_callbacks
from tfvit.training.memory import PeakResidentMemory, resident_mb
from tfvit.training.optimizers import build_optimizer
from tfvit.training.schedules import WarmupCosineDecay

BATCH, EXAMPLES, EPOCHS = 8, 64, 2          # 8 updates per epoch, 16 in all
PEAK, TOTAL, WARMUP, FLOOR = 0.05, 16, 4, 1e-3


def closed_form(s):
    """WarmupCosineDecay's documented formula, independent of its implementation."""
    if s < WARMUP:
        return PEAK * (s + 1) / WARMUP
    if s >= TOTAL:
        return FLOOR
    return FLOOR + (PEAK - FLOOR) * 0.5 * (1 + math.cos(math.pi * (s - WARMUP) / (TOTAL - WARMUP)))


def data(n=EXAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, size=n)


def mlp():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(16, activation="relu", name="fc1")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def compiled_model(model=None, **optimizer_kwargs):
    model = mlp() if model is None else model
    schedule = WarmupCosineDecay(PEAK, TOTAL, warmup_steps=WARMUP, min_learning_rate=FLOOR)
    model.compile(
        optimizer=build_optimizer("adamw", schedule, **optimizer_kwargs),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    return model


def read_events(directory):
    """tag -> [(step, value)] from every event file directly in ``directory``."""
    scalars, tags = defaultdict(list), set()
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
                if value.HasField("simple_value"):
                    scalars[value.tag].append((event.step, value.simple_value))
                elif value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.dtype.kind == "f" and array.size == 1:
                        scalars[value.tag].append((event.step, float(array)))
    return scalars, tags


class BatchLosses(keras.callbacks.Callback):
    """The loss of each batch, computed from the weights just before its update (no dropout here)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.losses, self.epoch = x, y, {}, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        xb, yb = self.x[batch * BATCH:(batch + 1) * BATCH], self.y[batch * BATCH:(batch + 1) * BATCH]
        loss = keras.losses.sparse_categorical_crossentropy(yb, self.model(xb), from_logits=True)
        steps = math.ceil(len(self.x) / BATCH)
        self.losses[self.epoch * steps + batch + 1] = float(np.mean(keras.ops.convert_to_numpy(loss)))


class MemorySpike(keras.callbacks.Callback):
    """Hold a large array for a moment in the middle of the first epoch, then free it."""

    size = 256 * 2**20

    def on_train_batch_end(self, batch, logs=None):
        if self.params and batch == 3 and not hasattr(self, "rss_before"):
            self.rss_before = psutil.Process().memory_info().rss
            spike = np.ones(self.size // 8)  # written, so every page is resident
            time.sleep(0.2)                  # long enough for a 20 ms sampler as well
            del spike


def test_standard_callbacks_fit_writes_everything(tmp_path):
    run_dir = tmp_path / "run"
    x, y = data()
    xv, yv = data(16, seed=1)
    model = compiled_model()
    hparams = {"model": "mlp", "lr": PEAK, "batch_size": np.int64(BATCH), "warmup": WARMUP, "mixed": False}
    callbacks = standard_callbacks(run_dir, batch_size=BATCH, hparams=hparams, every_n_steps=3)
    spike = MemorySpike()
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=(xv, yv), shuffle=False,
                        callbacks=callbacks + [spike], verbose=0).history

    train, train_tags = read_events(run_dir / "train")
    validation, _ = read_events(run_dir / "validation")
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_time", "epoch_step_time",
                "epoch_images_per_second", "epoch_peak_memory_mb", "step_loss", "step_learning_rate"):
        assert tag in train_tags, tag
    assert [s for s, _ in train["epoch_loss"]] == [0, 1] and len(validation["epoch_accuracy"]) == 2

    # One point per 3 optimizer updates; the rate read at optimizer.iterations = s is the schedule at s.
    steps = [s for s, _ in train["step_learning_rate"]]
    assert steps == [3, 6, 9, 12, 15] and [s for s, _ in train["step_loss"]] == steps
    np.testing.assert_allclose([v for _, v in train["step_learning_rate"]], [closed_form(s) for s in steps],
                               rtol=1e-5)
    # The per-epoch rate in History/CSV is the rate after each epoch's updates (8 and 16).
    np.testing.assert_allclose(history["learning_rate"], [closed_form(8), closed_form(16)], rtol=1e-5)
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], history["learning_rate"], rtol=1e-6)

    # TrainingSpeed's values reach History, TensorBoard and the CSV alike.
    assert "epoch_epoch_time" not in train_tags and "epoch_traced" not in train_tags
    for key in ("time", "step_time", "images_per_second", "peak_memory_mb"):
        assert len(history[key]) == EPOCHS and all(v > 0 for v in history[key]), key
        np.testing.assert_allclose([v for _, v in train[f"epoch_{key}"]], history[key], rtol=1e-6)
    for ips, step_time, epoch_time in zip(history["images_per_second"], history["step_time"], history["time"]):
        assert ips * step_time == pytest.approx(BATCH, rel=1e-6)   # consistency, not speed
        assert epoch_time >= step_time * EXAMPLES / BATCH           # the epoch holds its 8 steps
    # A peak, measured per epoch: the freed spike counts in epoch 0 only.
    peak = np.array(history["peak_memory_mb"]) * 2**20
    assert peak[0] >= spike.rss_before + 0.95 * MemorySpike.size
    assert peak[1] < peak[0] - 0.5 * MemorySpike.size

    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == EPOCHS and [int(r["epoch"]) for r in rows] == [0, 1]
    for column in ("loss", "val_accuracy", "learning_rate", "time", "images_per_second", "peak_memory_mb"):
        assert column in rows[0], column

    best = keras.saving.load_model(run_dir / "best.keras")
    best_epoch = int(np.argmax(history["val_accuracy"]))
    _, accuracy = best.evaluate(xv, yv, verbose=0)
    assert accuracy == pytest.approx(history["val_accuracy"][best_epoch])

    # Hyperparameters: the HParams plugin's session and experiment summaries, and the JSON copy.
    _, root_tags = read_events(run_dir)
    assert {"_hparams_/session_start_info", "_hparams_/experiment"} <= root_tags
    session = None
    for path in glob.glob(str(run_dir / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    content = value.metadata.plugin_data.content
                    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert session.hparams["lr"].number_value == pytest.approx(PEAK)
    assert session.hparams["model"].string_value == "mlp" and session.hparams["mixed"].bool_value is False
    assert json.loads((run_dir / "hparams.json").read_text()) == {
        "batch_size": BATCH, "lr": PEAK, "mixed": False, "model": "mlp", "warmup": WARMUP,
    }


def test_step_loss_is_the_loss_of_each_update(tmp_path):
    x, y = data()
    model = compiled_model()
    reference = BatchLosses(x, y)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[StepScalars(tmp_path, every_n_steps=1), reference])
    scalars, _ = read_events(tmp_path / "train")
    logged = dict(scalars["step_loss"])
    assert sorted(logged) == list(range(1, 17))
    np.testing.assert_allclose([logged[s] for s in sorted(logged)],
                               [reference.losses[s] for s in sorted(logged)], rtol=1e-4)


def test_step_scalars_with_gradient_accumulation_model(tmp_path):
    accumulation = pytest.importorskip("tfvit.training.accumulation")
    x, y = data()
    model = compiled_model(accumulation.GradientAccumulationModel(mlp(), accum=4))
    reference = BatchLosses(x, y)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[StepScalars(tmp_path, every_n_steps=4), reference])
    scalars, _ = read_events(tmp_path / "train")
    steps = [4, 8, 12, 16]  # one update per batch of 4 micro-batches
    assert [s for s, _ in scalars["step_learning_rate"]] == steps
    np.testing.assert_allclose([v for _, v in scalars["step_learning_rate"]], [closed_form(s) for s in steps],
                               rtol=1e-5)
    np.testing.assert_allclose([v for _, v in scalars["step_loss"]], [reference.losses[s] for s in steps], rtol=1e-4)


def test_training_speed_peak_memory_by_sampling():
    """The psutil sampler finds the spike too ("auto", checked above, is the kernel's mark on Linux)."""
    x, y = data()
    speed, spike = TrainingSpeed(batch_size=BATCH, memory="sample"), MemorySpike()
    history = compiled_model().fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                                   callbacks=[speed, spike]).history
    peak = np.array(history["peak_memory_mb"]) * 2**20
    assert peak[0] >= spike.rss_before + 0.95 * MemorySpike.size
    assert peak[1] < peak[0] - 0.5 * MemorySpike.size
    assert peak[1] >= 0.9 * psutil.Process().memory_info().rss - MemorySpike.size  # a real RSS, not 0


def test_kernel_peak_mode_where_available():
    if PeakResidentMemory("auto").method != "kernel":
        with pytest.raises(ValueError, match="memory='kernel'"):
            TrainingSpeed(memory="kernel").on_train_begin()
        return
    speed = TrainingSpeed(memory="auto")
    speed.on_train_begin()
    assert speed._probe.method == "kernel"  # so the fit test above measured the kernel's mark
    speed.on_train_end()


@pytest.mark.parametrize("method", ["auto", "sample"])
def test_peak_resident_memory_as_a_context_manager(method):
    """What the tools read: the block's peak, its baseline and what the block added on top of it."""
    size_mb = MemorySpike.size / 2**20
    with PeakResidentMemory(method) as probe:
        spike = np.ones(MemorySpike.size // 8)  # written, so every page is resident
        time.sleep(0.05)                        # several 5 ms samples
        del spike
    with PeakResidentMemory(method) as after:
        pass
    assert probe.baseline_mb == pytest.approx(resident_mb(), rel=0.2)
    assert probe.added_mb == pytest.approx(probe.peak_mb - probe.baseline_mb)
    assert probe.added_mb >= 0.95 * size_mb
    # Each block starts from the resident size on entry, not from an earlier block's peak.
    assert after.added_mb < 0.5 * size_mb and after.peak_mb < probe.peak_mb - 0.5 * size_mb
    with PeakResidentMemory(method, baseline_mb=10.0) as fixed:
        pass
    assert fixed.baseline_mb == 10.0 and fixed.added_mb == pytest.approx(fixed.peak_mb - 10.0)
    assert fixed.peak_mb >= 0.9 * resident_mb()  # a real RSS, not 0


def test_training_speed_counts_images_without_batch_size():
    """No batch_size: images come from the loss mean's count, short last batch included (60 = 7*8 + 4)."""
    x, y = data(60)
    history = compiled_model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
                                   callbacks=[TrainingSpeed()]).history
    images = history["images_per_second"][0] * history["step_time"][0] * 8
    assert images == pytest.approx(60, rel=1e-6)


def test_standard_callbacks_order_and_options(tmp_path):
    callbacks = standard_callbacks(tmp_path, monitor="val_loss", early_stopping_patience=3, profile_batch=(2, 3))
    assert [type(c).__name__ for c in callbacks] == [
        "StopOnNonFiniteLoss", "TrainingSpeed", "StepScalars", "TensorBoard", "CSVLogger", "ModelCheckpoint",
        "EarlyStopping",
    ]
    assert callbacks[5].monitor == callbacks[6].monitor == "val_loss" and callbacks[6].patience == 3
    assert callbacks[5].filepath == os.path.join(tmp_path, "best.keras")
    plain = standard_callbacks(tmp_path, best_checkpoint=False, stop_on_non_finite=False)
    assert [type(c).__name__ for c in plain] == ["TrainingSpeed", "StepScalars", "TensorBoard", "CSVLogger"]
    assert not os.path.exists(tmp_path / "hparams.json")  # only written when hparams are given


@pytest.mark.parametrize("call,match", [
    (lambda d: log_hparams(d, {"layers": [1, 2]}), r"hparams\['layers'\]"),
    (lambda d: log_hparams(d, ["lr"]), "dict"),
    (lambda d: log_hparams(d, {"lr": 0.1}, metrics=[""]), "metrics"),
    (lambda d: standard_callbacks(d, early_stopping_patience=-1), "early_stopping_patience"),
    (lambda d: standard_callbacks(d, every_n_steps=0), "every_n_steps"),
    (lambda d: TrainingSpeed(batch_size=0), "batch_size"),
    (lambda d: TrainingSpeed(memory="gpu"), "memory"),
    (lambda d: PeakResidentMemory("gpu"), "memory"),
    (lambda d: PeakResidentMemory(interval=0), "interval"),
])
def test_rejects_bad_arguments(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
