import math

import pytest

from tfvit.experiments import RunConfig, gao

BASE = RunConfig(dataset="cifar10", model="swin_cifar_patch2_window4_32", batch_size=128, epochs=10,
                 learning_rate=1e-3)


@pytest.mark.parametrize("scaling, factor", [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_plan_scales_the_rate_from_the_micro_batch(scaling, factor):
    accumulated, effective = gao.plan(BASE, 4, compare=True, baseline="effective", lr_scaling=scaling)
    assert (accumulated.batch_size, accumulated.accum, accumulated.micro_batch) == (128, 4, 32)
    assert (effective.batch_size, effective.accum) == (128, 1)
    # Same effective batch: same rate, whatever the scaling; 4x the micro-batch: rate x factor.
    assert math.isclose(accumulated.learning_rate, 1e-3 * factor)
    assert math.isclose(effective.learning_rate, accumulated.learning_rate)
    _, micro = gao.plan(BASE, 4, compare=True, baseline="micro", lr_scaling=scaling)
    assert (micro.batch_size, micro.accum, micro.learning_rate) == (32, 1, 1e-3)


def test_sweep_covers_the_paper_grid():
    runs = gao.plan(BASE, 2, compare=True, sweep=True)
    grid = {(r.batch_size, r.epochs) for r in runs if r.group == "accumulation"}
    assert grid == {(b, e) for b in (32, 64, 128) for e in (10, 20, 50)}
    assert len(runs) == 18 and len({r.name for r in runs}) == 18


def test_plan_rejects_bad_requests():
    with pytest.raises(ValueError, match="baseline"):
        gao.plan(BASE, 4, compare=True, baseline="large")
    with pytest.raises(ValueError, match="larger than the effective batch"):
        gao.plan(BASE, 256)


def result(group, batch, accum, accuracy, seconds):
    config = {"dataset": "mnist", "model": "m", "epochs": 3, "batch_size": batch, "accum": accum}
    return {"config": config, "group": group, "micro_batch": -(-batch // accum), "test_accuracy": accuracy,
            "time_per_epoch": seconds}


def test_comparisons_pair_accumulation_with_its_baseline():
    pairs = gao.comparisons([result("accumulation", 64, 4, 0.9, 12.0), result("baseline-effective", 64, 1, 0.85, 10.0),
                             result("baseline-micro", 16, 1, 0.8, 8.0)])
    assert [(p["baseline"], p["baseline batch"]) for p in pairs] == [("baseline-effective", 64), ("baseline-micro", 16)]
    assert math.isclose(pairs[0]["difference"], 0.05) and math.isclose(pairs[0]["time/epoch ratio"], 1.2)
    assert "| mnist | 3 | 64 | 4 | baseline-effective |" in gao.comparison_table(pairs)
