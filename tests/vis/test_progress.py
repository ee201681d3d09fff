"""The perturbation methods' progress bar: shown only for long work, never when Keras's logging is off."""

import time

import keras
import numpy as np

from tfvit.vis import rise
from tfvit.vis.progress import PassProgress


def run(progress, steps, passes, pause=0.0):
    for _ in range(steps):
        time.sleep(pause)
        progress.advance(passes)


def test_a_long_run_shows_the_passes_and_a_short_one_nothing(capsys):
    run(PassProgress(1000, "rise", after_seconds=0.01), steps=10, passes=100, pause=0.005)
    shown = capsys.readouterr().out
    assert "rise: 1000 forward passes" in shown and "1000/1000" in shown
    run(PassProgress(1000, "rise", after_seconds=60.0), steps=10, passes=100, pause=0.005)
    assert capsys.readouterr().out == ""


def test_no_bar_when_keras_logging_is_off(capsys):
    keras.config.disable_interactive_logging()
    try:
        run(PassProgress(1000, "occlusion", after_seconds=0.0), steps=10, passes=100, pause=0.002)
    finally:
        keras.config.enable_interactive_logging()
    assert capsys.readouterr().out == ""


def test_rise_on_a_tiny_model_prints_nothing(capsys):
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    rise(model, np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype("float32"), num_masks=64)
    assert "forward passes" not in capsys.readouterr().out
