"""The per-run time figures: steady-state means that leave out every epoch that built its step functions."""

import math

from tfvit.experiments.run import first_epoch_time, steady_mean


def test_a_resumed_runs_retrace_is_left_out():
    # Epochs 0-2 in one process, 3-4 in a resumed one: epochs 0 and 3 traced.
    history = {"epoch_time": [20.0, 5.0, 6.0, 19.0, 7.0], "traced": [1.0, 0.0, 0.0, 1.0, 0.0]}
    assert steady_mean(history, "epoch_time") == 6.0
    assert first_epoch_time(history) == 20.0


def test_histories_without_the_traced_column_leave_out_the_first_epoch():
    assert steady_mean({"epoch_time": [20.0, 5.0, 7.0]}, "epoch_time") == 6.0


def test_a_run_of_traced_epochs_only_reports_their_mean_and_nothing_gives_nan():
    assert steady_mean({"epoch_time": [20.0], "traced": [1.0]}, "epoch_time") == 20.0
    assert steady_mean({"epoch_time": [float("nan"), 4.0], "traced": [0.0, 0.0]}, "epoch_time") == 4.0
    assert math.isnan(steady_mean({}, "epoch_time")) and math.isnan(first_epoch_time({}))
