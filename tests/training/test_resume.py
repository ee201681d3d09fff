"""Resume after interruption: the interrupted-and-restarted run equals the uninterrupted one."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.training import GradientAccumulationModel
from tfvit.training.resume import TrainingInterrupted, fit_resumable, resume_epoch, stopped_early, traced_epochs

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(48, 6)).astype("float32"), RNG.integers(0, 3, 48)


def dataset_from_epoch(epoch):
    """Pass k is epoch `epoch + k`, shuffled by a seed of its own, as tfvit.data.load does."""
    passes = tf.Variable(epoch, dtype=tf.int64)

    def one_pass(_):
        seed = passes.assign_add(1)
        order = tf.random.experimental.stateless_shuffle(tf.range(48), seed=tf.stack([seed, 7]))
        return tf.data.Dataset.from_tensor_slices((tf.gather(X, order), tf.gather(Y, order)))

    return tf.data.Dataset.range(1).flat_map(one_pass).batch(12)


def make_trainer():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.Dense(3)])
    trainer = GradientAccumulationModel(model, accum=2)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer


class InterruptAt(keras.callbacks.Callback):
    """Ctrl-C at the start of 0-based ``epoch`` (or at its ``batch``-th batch)."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    reference = make_trainer()
    fit_resumable(reference, dataset_from_epoch, 5, tmp_path / "a", steps_per_epoch=4, verbose=0)

    interrupted = make_trainer()
    with pytest.raises(KeyboardInterrupt):
        fit_resumable(interrupted, dataset_from_epoch, 5, tmp_path / "b", steps_per_epoch=4, verbose=0,
                      callbacks=[InterruptAt(3)])
    assert resume_epoch(tmp_path / "b") == 3
    restarted = make_trainer()  # a new process would build everything afresh, with the same seed
    history = fit_resumable(restarted, dataset_from_epoch, 5, tmp_path / "b", steps_per_epoch=4, verbose=0)
    assert history.epoch == [3, 4]
    # dropout's random state, optimizer moments and step count all continue: identical weights
    for a, b in zip(reference.weights, restarted.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(restarted.optimizer.iterations) == 5 * 4
    # A restart of a finished training trains nothing and gives back the trained model, not fresh weights.
    again = make_trainer()
    assert fit_resumable(again, dataset_from_epoch, 5, tmp_path / "b", 4, verbose=0) is None
    for a, b in zip(reference.weights + reference.optimizer.variables, again.weights + again.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Each process's first epoch traced its steps: epoch 0, and epoch 3 where the restart began.
    assert traced_epochs(tmp_path / "a") == [0] and traced_epochs(tmp_path / "b") == [0, 3]
    assert traced_epochs(tmp_path / "nothing-saved") == [0]


def test_callback_counters_survive_a_restart(tmp_path):
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=100)
    with pytest.raises(KeyboardInterrupt):
        fit_resumable(make_trainer(), dataset_from_epoch, 4, tmp_path, 4, verbose=0,
                      callbacks=[stopper, InterruptAt(2)])
    best = stopper.best
    state = json.load(open(os.path.join(tmp_path, "epoch-0002", "state.json")))
    assert state["epoch"] == 2 and state["callbacks"][0]["best"] == best
    fresh = keras.callbacks.EarlyStopping(monitor="loss", patience=100)
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("best", fresh.best)

    fit_resumable(make_trainer(), dataset_from_epoch, 4, tmp_path, 4, verbose=0, callbacks=[fresh, Probe()])
    assert seen["best"] == best  # not reset to +inf by on_train_begin


def test_a_run_stopped_early_is_restored_not_trained_on(tmp_path):
    # The loss never improves by 10 (min_delta), so patience 1 ends training after the second of six epochs.
    def stopper():
        return keras.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)

    reference = make_trainer()
    history = fit_resumable(reference, dataset_from_epoch, 6, tmp_path, 4, verbose=0, callbacks=[stopper()])
    assert history.epoch == [0, 1] and resume_epoch(tmp_path) == 2 and stopped_early(tmp_path)
    restarted = make_trainer()
    assert fit_resumable(restarted, dataset_from_epoch, 6, tmp_path, 4, verbose=0, callbacks=[stopper()]) is None
    assert resume_epoch(tmp_path) == 2 and int(restarted.optimizer.iterations) == 2 * 4
    for a, b in zip(reference.weights, restarted.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_state_from_another_configuration_is_refused(tmp_path):
    fit_resumable(make_trainer(), dataset_from_epoch, 1, tmp_path, 4, verbose=0)
    keras.utils.set_random_seed(3)
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    other.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="different configuration"):
        fit_resumable(other, dataset_from_epoch, 2, tmp_path, 4, verbose=0)


@pytest.mark.parametrize("epoch, batch, saved", [(0, 1, 0), (1, None, 1), (3, 2, 3)])
def test_an_interrupt_says_the_epoch_in_progress_and_the_epochs_saved(tmp_path, epoch, batch, saved):
    with pytest.raises(TrainingInterrupted) as stopped:
        fit_resumable(make_trainer(), dataset_from_epoch, 5, tmp_path, 4, verbose=0, name="the-run",
                      callbacks=[InterruptAt(epoch, batch)])
    interrupted = stopped.value
    assert isinstance(interrupted, KeyboardInterrupt)  # still what Ctrl-C raises, for callers that catch that
    assert (interrupted.saved, interrupted.epochs) == (saved, 5) == (resume_epoch(tmp_path), 5)
    kept = {0: "no epoch is saved yet", 1: "epoch 1 is saved", 3: "epochs 1-3 are saved"}[saved]
    assert str(interrupted) == f"interrupted in epoch {saved + 1}/5 of the-run; {kept}; run the same command to " \
                               "continue"
    assert isinstance(interrupted.__cause__, KeyboardInterrupt)


def test_interrupted_messages_outside_the_epochs_and_in_a_study():
    assert str(TrainingInterrupted("r", 2, 4, training=False)) == (
        "interrupted before epoch 3/4 of r began; epochs 1-2 are saved; run the same command to continue")
    assert str(TrainingInterrupted("r", 4, 4, training=False, study=(2, 3))) == (
        "interrupted after the last epoch of r (run 2/3 of the study), before its result was written; "
        "all 4 epochs are saved; run the same command to finish")
    assert "(run" not in str(TrainingInterrupted("r", 0, 4, study=(1, 1)))
    assert str(TrainingInterrupted("r", 2, 6, training=False, stopped=True)) == (
        "interrupted after the last epoch of r, before its result was written; training stopped early after "
        "epoch 2/6, which is saved; run the same command to finish")
    assert str(TrainingInterrupted("r", 4, 4, training=False, finished=True)) == (
        "interrupted as r finished: its result is written; run the same command to go on")


def test_a_state_that_cannot_be_written_stops_with_the_folder_and_the_epoch_kept(tmp_path, monkeypatch):
    from tfvit.training import resume

    write = resume.write_state
    calls = []

    def full_disk(directory, epoch, arrays, state):
        calls.append(epoch)
        if epoch == 2:
            raise OSError(28, "No space left on device")
        return write(directory, epoch, arrays, state)

    monkeypatch.setattr(resume, "write_state", full_disk)
    with pytest.raises(resume.StateNotSaved) as stopped:
        fit_resumable(make_trainer(), dataset_from_epoch, 3, tmp_path, 4, verbose=0)
    assert str(stopped.value) == (
        f"cannot save the resume state of epoch 2 in {tmp_path}: No space left on device; the state of epoch 1 is "
        "kept. Free space or make the folder writable, then run the same command to continue.")
    assert calls == [1, 2] and resume_epoch(tmp_path) == 1
