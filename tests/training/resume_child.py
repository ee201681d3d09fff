"""A small resumable training for tests/training/test_resume_faults.py, run as its own process so that it can
be killed for real: ``python -m tests.training.resume_child DIRECTORY EPOCHS``.

It prints ``step``, ``save`` and ``saved`` lines (flushed) as it goes, so the test can choose the moment of each
kill: during the steps, or between the beginning and the end of an end-of-epoch save. The final weights are
written to ``DIRECTORY/final.npz``. The model is big enough (about 24 MB of state) that a save takes a while.
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


class SayStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        print("step", flush=True)


def main(directory, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048, activation="relu"),
                              keras.layers.Dropout(0.5, seed=1), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    write = resume_state.write_state

    def announced_write(*args, **kwargs):
        print("save", flush=True)
        folder = write(*args, **kwargs)
        print("saved", flush=True)
        return folder

    resume.write_state = announced_write  # the name resume.py calls
    try:
        fit_resumable(model, dataset_from_epoch, epochs, os.path.join(directory, "resume"), STEPS,
                      callbacks=[SayStep()], verbose=0)
    finally:
        resume.write_state = write
    np.savez(os.path.join(directory, "final.npz"), *[v.numpy() for v in model.weights])
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
