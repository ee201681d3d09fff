"""A run whose loss turns NaN stops in that batch with ``NonFiniteLoss``, before any end-of-epoch save: the resume
state, the history and best.keras keep the last finished epoch, and the same run continues from there."""

import csv
import glob
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.training import (GradientAccumulationModel, NonFiniteLoss, ResumableTraining, StopOnNonFiniteLoss,
                            fit_resumable, resume_epoch, standard_callbacks)

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(48, 6)).astype("float32"), RNG.integers(0, 3, 48)
BATCH, STEPS, EPOCHS = 12, 4, 4


def dataset_from_epoch(start, bad=None):
    """Epochs ``start``, ``start + 1``, ...; in the 0-based epoch and batch ``bad`` = (epoch, batch) the images
    are NaN."""
    def passes():
        for epoch in itertools.count(start):
            x = X.copy()
            if bad is not None and epoch == bad[0]:
                x[bad[1] * BATCH:(bad[1] + 1) * BATCH] = np.nan
            for i in range(0, len(x), BATCH):
                yield x[i:i + BATCH], Y[i:i + BATCH]

    signature = (tf.TensorSpec((None, 6), tf.float32), tf.TensorSpec((None,), tf.int64))
    return tf.data.Dataset.from_generator(passes, output_signature=signature)


def restored(accum, directory):
    """A fresh trainer with the resume state of ``directory`` read into it, as a restarted run begins."""
    trainer = make_trainer(accum)
    resume = ResumableTraining(directory)
    resume.set_model(trainer)
    resume.on_train_begin()
    return trainer


def make_trainer(accum):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3)])
    trainer = GradientAccumulationModel(model, accum=accum) if accum > 1 else model
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-2), metrics=["accuracy"],
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer


@pytest.mark.parametrize("accum", [1, 2])
def test_a_nan_loss_stops_the_run_in_its_batch_and_the_last_finished_epoch_is_kept(tmp_path, accum):
    run_dir, resume_dir = tmp_path / "run", tmp_path / "run" / "resume"
    callbacks = standard_callbacks(run_dir, monitor="loss", batch_size=BATCH)
    assert isinstance(callbacks[0], StopOnNonFiniteLoss)
    trainer = make_trainer(accum)
    with pytest.raises(NonFiniteLoss) as stopped:
        fit_resumable(trainer, lambda e: dataset_from_epoch(e, bad=(1, 2)), EPOCHS, resume_dir, STEPS,
                      callbacks=callbacks, verbose=0)
    error = stopped.value
    assert isinstance(error, ArithmeticError)
    assert (error.epoch, error.epochs, error.step, error.steps) == (2, EPOCHS, 3, STEPS)
    message = str(error)
    assert message.startswith("the training loss is NaN at epoch 2/4, step 3/4: the run diverged and was stopped.")
    assert "a learning rate (now 0.01) too high for the batch size" in message
    assert "float16 overflow under mixed_float16 without loss scaling" in message and "bad input data" in message
    assert "What was saved at the end of epoch 1, the last finished one, is kept; nothing of epoch 2 was saved" \
        in message
    assert "\n" not in message  # one paragraph

    # The weights in memory took the NaN update; nothing saved did: the resume state is epoch 1's, finite and
    # equal to what a run that only trained epoch 1 saves.
    assert not all(np.isfinite(w.numpy()).all() for w in trainer.weights)
    assert resume_epoch(resume_dir) == 1
    kept = restored(accum, resume_dir)
    assert all(np.isfinite(v.numpy()).all() for v in kept.variables + kept.optimizer.variables)
    fit_resumable(make_trainer(accum), dataset_from_epoch, 1, tmp_path / "one-epoch", STEPS, verbose=0)
    for a, b in zip(kept.weights, restored(accum, tmp_path / "one-epoch").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0"] and np.isfinite(float(rows[0]["loss"]))
    best = keras.saving.load_model(run_dir / "best.keras", compile=False)
    assert all(np.isfinite(w.numpy()).all() for w in best.weights)

    # With the data mended, the same command goes on from epoch 2.
    history = fit_resumable(make_trainer(accum), dataset_from_epoch, EPOCHS, resume_dir, STEPS,
                            callbacks=standard_callbacks(run_dir, monitor="loss", batch_size=BATCH), verbose=0)
    assert history.epoch == [1, 2, 3] and all(np.isfinite(history.history["loss"]))


def test_a_nan_loss_in_the_first_epoch_says_nothing_was_saved(tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"at epoch 1/2, step 1/4: .* No epoch had finished: nothing of this run "
                                            r"was saved\.$"):
        fit_resumable(make_trainer(1), lambda e: dataset_from_epoch(e, bad=(0, 0)), 2, tmp_path, STEPS,
                      callbacks=[StopOnNonFiniteLoss()], verbose=0)
    assert resume_epoch(tmp_path) == 0 and not glob.glob(str(tmp_path / "**" / "*.npz"), recursive=True)


def test_turned_off_the_run_trains_on_as_keras_does(tmp_path):
    callbacks = standard_callbacks(tmp_path, monitor="loss", best_checkpoint=False, stop_on_non_finite=False)
    assert not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks)
    history = make_trainer(1).fit(dataset_from_epoch(0, bad=(0, 1)), epochs=1, steps_per_epoch=STEPS,
                                  callbacks=callbacks, shuffle=False, verbose=0)
    assert np.isnan(history.history["loss"][0])


def test_the_message_names_infinity_and_float16_without_loss_scaling():
    text = str(NonFiniteLoss(float("inf"), 3, epochs=10, step=7, steps=50, learning_rate=None, float16=True))
    assert text.startswith("the training loss is +inf at epoch 3/10, step 7/50:")
    assert "a learning rate too high" in text  # no rate to name
    assert "(this model computes in float16 and its optimizer does not scale the loss)" in text
    error = NonFiniteLoss(float("nan"), 2, epochs=10, step=1, steps=50)
    error.name, error.study = "accumulation/b64-acc4-lr1e6-e10", (2, 3)  # set by a caller that knows the run
    assert str(error).startswith("the training loss is NaN at epoch 2/10, step 1/50 of accumulation/b64-acc4-lr1e6-e10 "
                                 "(run 2/3 of the study): the run diverged")
