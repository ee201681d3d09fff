"""Resume after interruption: a killed run restarted with the same command continues from its last
finished epoch and ends where an uninterrupted run would.

Three things make that exact: (1) at the end of every epoch the model's variables (weights, BatchNorm
statistics, the random-number state of dropout and stochastic depth), the optimizer's variables (step
count, moments, loss scale) and the counters of callbacks such as EarlyStopping are written as one
atomic, checksummed state (``tfvit.training.resume_state``: a damaged newest state falls back to the one
before it); (2) on restart they are read back before the first step; (3) the data of epoch e depends
only on (seed, e), so the restarted run sees the batches the interrupted one would have seen
(``fit_resumable`` asks for the data starting at the epoch it resumes from).

An interruption (Ctrl-C, SIGINT) inside ``fit_resumable`` comes out as ``TrainingInterrupted``, a
``KeyboardInterrupt`` that says which epoch was running and which are saved: the epochs whose state was
completely written. The epoch in progress is lost and trained again on restart.

The state also records the epoch at which each process began training (``traced_epochs``): those epochs
include tracing and compiling the steps, and a steady-state time per epoch leaves them out; and whether a
callback (early stopping) ended training at that epoch (``stopped_early``), so that a restart does not train
on.

A run whose training is over (every epoch saved, or stopped early) is not trained again: ``fit_resumable``
restores its saved state into the model and returns None, so that what follows (the final evaluation, the
final weights) sees the trained model, whatever moment of the end of the run an interruption came at.
"""


import keras
import numpy as np

from tfvit.errors import UserError
from tfvit.training.distribution import expected_end_of_data, numpy_value, replica_batches
from tfvit.training.resume_state import latest_state, read_variables, write_state

# Counters that Keras callbacks reset in on_train_begin and that a resumed run must keep.
CALLBACK_COUNTERS = ("best", "wait", "best_epoch", "stopped_epoch")


def _silent(message):
    pass


def resume_epoch(directory):
    """The epoch a run saved in ``directory`` continues from: that of its newest complete state (0 without)."""
    return latest_state(directory, report=_silent)[0]


def stopped_early(directory):
    """Whether the run saved in ``directory`` ended its training early (a callback such as EarlyStopping set
    ``model.stop_training``) at the epoch of its newest complete state."""
    state = latest_state(directory, report=_silent)[2] or {}
    return bool(state.get("stopped_early", False))


def training_over(directory, epochs):
    """Whether the run saved in ``directory`` has nothing left to train of its ``epochs``: all are saved, or it
    stopped early."""
    return resume_epoch(directory) >= epochs or stopped_early(directory)


def traced_epochs(directory):
    """The epochs (0-based) at which a process began training the run saved in ``directory``: the first
    epoch of each ``fit`` call, whose time includes tracing and compiling the steps ([0] without a record)."""
    state = latest_state(directory, report=_silent)[2] or {}
    return [int(e) for e in state.get("fit_starts", [0])]


class StateNotSaved(UserError):
    """The resume state of an epoch could not be written; the message names the folder, the reason and the
    epoch whose state is kept."""


def epochs_text(saved, epochs, stopped=False):
    """What a resume state of ``saved`` finished epochs (of ``epochs``) keeps, in words; ``stopped``: training
    ended early after epoch ``saved``."""
    if stopped:
        return f"training stopped early after epoch {saved}/{epochs}, which is saved"
    if saved <= 0:
        return "no epoch is saved yet"
    if saved >= epochs:
        return f"all {epochs} epochs are saved"
    return "epoch 1 is saved" if saved == 1 else f"epochs 1-{saved} are saved"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a resumable run. ``saved``: the epochs the resume state holds (epochs 1..saved, 1-based);
    ``training``: whether it came during the epochs (else while the run was prepared or evaluated);
    ``stopped``: training had ended early after epoch ``saved``; ``finished``: the run's result was written, only
    the deletion of its resume state was left; ``study``: (i, n) when the run was the i-th of
    a study of n runs; ``signal_name``: the signal that stopped the process when it was not SIGINT (SIGTERM).
    ``str()`` is the one line to show."""

    def __init__(self, name, saved, epochs, training=True, study=None, stopped=False, finished=False):
        super().__init__(name, saved, epochs)
        self.name, self.saved, self.epochs = str(name), int(saved), int(epochs)
        self.training, self.study, self.stopped, self.finished = training, study, bool(stopped), bool(finished)
        self.signal_name = None

    def __str__(self):
        of = self.name + (f" (run {self.study[0]}/{self.study[1]} of the study)" if self.study and self.study[1] > 1
                          else "")
        stopped = f"{self.signal_name} " if self.signal_name else "interrupted "
        if self.finished:
            return f"{stopped}as {of} finished: its result is written; run the same command to go on"
        if self.stopped or self.saved >= self.epochs:
            where, then = f"after the last epoch of {of}, before its result was written", "finish"
        elif self.training:
            where, then = f"in epoch {self.saved + 1}/{self.epochs} of {of}", "continue"
        else:
            where, then = f"before epoch {self.saved + 1}/{self.epochs} of {of} began", "continue"
        return f"{stopped}{where}; {epochs_text(self.saved, self.epochs, self.stopped)}; run the same command to {then}"


def build_optimizer_variables(model):
    """Create the variables of ``model``'s optimizer if they do not exist yet. Keras on TensorFlow creates them
    inside the first traced step, which makes tf.function trace that step a second time; made before, the first
    epoch is that much shorter (and a restore needs them anyway)."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)


def trained_variables(model):
    """What a resume state holds of a compiled ``model``: its variables, then its optimizer's."""
    return list(model.variables) + list(model.optimizer.variables)


def restore_state(model, folder, state, callbacks=()):
    """Assign the state saved in ``folder`` (``state``: its record) to the compiled ``model``'s variables and
    optimizer, and the saved counters to ``callbacks`` (in the order they were saved). A state of another
    configuration (other variables or shapes) raises ValueError."""
    build_optimizer_variables(model)
    variables = trained_variables(model)
    stored = read_variables(folder)
    if len(stored) != len(variables):
        raise ValueError(
            f"the saved state in {folder} holds {len(stored)} variables but this model "
            f"and optimizer have {len(variables)}: it was saved by a different configuration. "
            f"Use another run directory, or delete this one to start afresh."
        )
    for i, (variable, value) in enumerate(zip(variables, stored)):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"saved variable {i} ({variable.path}) has shape {value.shape}, "
                             f"expected {tuple(variable.shape)}: different configuration.")
        variable.assign(value)
    for callback, counters in zip(callbacks, state["callbacks"]):
        for name, value in counters.items():
            setattr(callback, name, value)


class ResumableTraining(keras.callbacks.Callback):
    """Save the training state after each epoch; restore it when training begins.

    Put it last in the callback list, so that it restores callback counters after their own
    ``on_train_begin`` has reset them and saves after they have updated at the end of the epoch.
    ``callbacks``: the callbacks whose counters (best value, patience counter) are saved with it.
    """

    def __init__(self, directory, callbacks=(), report=None, restore=None):
        super().__init__()
        self.directory = str(directory)
        # (epoch, folder, state) of tfvit.training.resume_state.latest_state when the caller has read it
        # already (fit_resumable): verifying a state reads all of it again.
        self.restore = restore
        self.tracked_callbacks = [c for c in callbacks if c is not self]
        self.report = report
        self.fit_starts = [0]
        self.saved_epoch = 0

    def on_train_begin(self, logs=None):
        epoch, folder, state = self.restore or latest_state(self.directory, report=self.report)
        self.restore = None  # a later fit call reads the state of then
        self.saved_epoch = epoch
        if folder is None:
            build_optimizer_variables(self.model)
            self.fit_starts = [0]
            return
        # This process traces its steps afresh: its first epoch is one more that is not steady state.
        self.fit_starts = [int(e) for e in state.get("fit_starts", [0])] + [epoch]
        restore_state(self.model, folder, state, self.tracked_callbacks)

    def on_epoch_end(self, epoch, logs=None):
        arrays = [numpy_value(v) for v in trained_variables(self.model)]
        counters = [
            {name: _plain(getattr(c, name)) for name in CALLBACK_COUNTERS if _plain(getattr(c, name, None)) is not None}
            for c in self.tracked_callbacks
        ]
        try:
            # The callbacks before this one have run: EarlyStopping has set stop_training if it ends training here.
            stopped = bool(getattr(self.model, "stop_training", False))
            write_state(self.directory, epoch + 1, arrays,
                        {"callbacks": counters, "fit_starts": self.fit_starts, "stopped_early": stopped})
        except OSError as error:
            kept = f"the state of epoch {self.saved_epoch} is kept" if self.saved_epoch else "no epoch is saved yet"
            raise StateNotSaved(
                f"cannot save the resume state of epoch {epoch + 1} in {self.directory}: "
                f"{error.strerror or error}; {kept}. Free space or make the folder writable, then run the same "
                f"command to continue."
            ) from error
        self.saved_epoch = epoch + 1


def _plain(value):
    """A JSON-friendly number, or None for what is not one (weights, arrays)."""
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    return None


def fit_resumable(model, dataset_from_epoch, epochs, directory, steps_per_epoch, callbacks=(), name=None,
                  report=None, restore_from=None, **fit_kwargs):
    """``model.fit`` that continues a run saved in ``directory``.

    ``dataset_from_epoch(epoch)`` returns a batched ``tf.data.Dataset`` whose successive passes are
    the epochs ``epoch``, ``epoch + 1``, ... and whose content depends only on fixed seeds and the
    epoch (``tfvit.data.load(..., epoch=epoch)`` is such a dataset); each pass holds
    ``steps_per_epoch`` batches. Returns the History of this call, or None if the run's training was over
    (every epoch saved, or stopped early by a callback): then the saved state has been restored into ``model``,
    so that it is the trained model whatever happened after its last epoch. A KeyboardInterrupt during training is raised again as ``TrainingInterrupted`` naming the run
    (``name``, default ``directory``), the epoch in progress and the epochs saved. A damaged saved state is
    passed over for the one before it, told to ``report`` (default: stderr); a state that cannot be written
    raises ``StateNotSaved``.

    ``restore_from``: the folder whose state is continued, when it is not ``directory`` (a multi-worker job's
    other workers save in a temporary folder of their own and continue from the chief's state). Under a
    ``tf.distribute`` strategy of several replicas (the model's), each replica gets its slice of every batch
    (``tfvit.training.distribution.replica_batches``).
    """
    restore_from = directory if restore_from is None else restore_from
    saved = latest_state(restore_from, report=report)
    start, folder, state = saved
    if folder is not None and (start >= epochs or state.get("stopped_early", False)):
        restore_state(model, folder, state)  # without callbacks: there is no training for their counters
        return None
    # Keras keeps one iterator across epochs when steps_per_epoch is given: pass k is epoch start + k.
    strategy = getattr(model, "distribute_strategy", None)
    stream = replica_batches(dataset_from_epoch(start).repeat(), strategy)
    callbacks = list(callbacks)
    resume = ResumableTraining(directory, callbacks, restore=saved)
    fit_kwargs.setdefault("shuffle", False)  # the dataset is shuffled by its own seeds
    try:
        with expected_end_of_data(strategy):  # of the validation data, when it is distributed too
            return model.fit(stream, initial_epoch=start, epochs=epochs, steps_per_epoch=steps_per_epoch,
                             callbacks=callbacks + [resume], **fit_kwargs)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as interrupt:
        # A state is complete once renamed into place: an interrupt inside on_epoch_end's writes leaves the
        # previous epoch's state, and that is what a restart continues from.
        raise TrainingInterrupted(directory if name is None else name, resume_epoch(restore_from), epochs,
                                  stopped=stopped_early(restore_from)) from interrupt
