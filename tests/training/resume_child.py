"""A small resumable training for tests/training/test_resume_faults.py, run as its own process so that it can
be killed for real: ``python -m tests.training.resume_child DIRECTORY EPOCHS [--wait]``.

It prints ``step``, ``save`` and ``saved`` lines (flushed) as it goes, so the test can choose the moment of each
kill: during the steps, or between the beginning and the end of an end-of-epoch save. With ``--wait`` it reads
a line from stdin after each of its lines before it goes on, so the test decides how far a run gets: a kill
lands at a point of the run's progress, not of the wall clock (which differs between machines). The final
weights are written to ``DIRECTORY/final.npz``. The model is big enough (about 24 MB of state) that a save takes a while.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tfvit  # noqa: E402, F401  (first: TensorFlow's start-up lines obey TF_CPP_MIN_LOG_LEVEL)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvit.training import resume, resume_state  # noqa: E402
from tfvit.training.resume import fit_resumable  # noqa: E402

STEPS = 3


def dataset_from_epoch(epoch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * 16, 1024)).astype("float32")
    y = rng.integers(0, 4, size=(STEPS * 16,))
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def announcer(wait):
    """Returns ``say(word)``: prints the word, flushed, and with ``wait`` blocks until stdin gives a line."""

    def say(word):
        print(word, flush=True)
        if wait:
            sys.stdin.readline()

    return say


class SayStep(keras.callbacks.Callback):
    def __init__(self, say):
        super().__init__()
        self.say = say

    def on_train_batch_end(self, batch, logs=None):
        self.say("step")


def main(directory, epochs, wait=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048, activation="relu"),
                              keras.layers.Dropout(0.5, seed=1), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    write = resume_state.write_state
    say = announcer(wait)

    def announced_write(*args, **kwargs):
        say("save")
        folder = write(*args, **kwargs)
        say("saved")
        return folder

    resume.write_state = announced_write  # the name resume.py calls
    try:
        fit_resumable(model, dataset_from_epoch, epochs, os.path.join(directory, "resume"), STEPS,
                      callbacks=[SayStep(say)], verbose=0)
    finally:
        resume.write_state = write
    np.savez(os.path.join(directory, "final.npz"), *[v.numpy() for v in model.weights])
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), wait="--wait" in sys.argv[3:])
