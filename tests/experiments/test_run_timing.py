"""The per-run time figures: steady-state means that leave out every epoch that built its step functions."""

import math

from tfvit.experiments.run import first_epoch_time, steady_mean


def test_a_resumed_runs_retrace_is_left_out():
    # Epochs 0-2 in one process, 3-4 in a resumed one: epochs 0 and 3 traced.
    history = {"epoch": [0, 1, 2, 3, 4], "time": [20.0, 5.0, 6.0, 19.0, 7.0]}
    assert steady_mean(history, "time", traced=[0, 3]) == 6.0
    assert first_epoch_time(history) == 20.0


def test_without_a_record_of_the_traced_epochs_the_first_epoch_is_left_out():
    assert steady_mean({"time": [20.0, 5.0, 7.0]}, "time") == 6.0
    # Epoch numbers, not positions: a history that starts at epoch 2 has no epoch 0 to leave out.
    assert steady_mean({"epoch": [2, 3], "time": [20.0, 4.0]}, "time", traced=[2]) == 4.0


def test_a_run_of_traced_epochs_only_reports_their_mean_and_nothing_gives_nan():
    assert steady_mean({"epoch": [0], "time": [20.0]}, "time", traced=[0]) == 20.0
    assert steady_mean({"epoch": [0, 1], "time": [float("nan"), 4.0]}, "time", traced=[]) == 4.0
    assert math.isnan(steady_mean({}, "time")) and math.isnan(first_epoch_time({}))
