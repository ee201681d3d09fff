import dataclasses
import math

import pytest

from tfvit.experiments import RunConfig, gao

BASE = RunConfig(dataset="cifar10", model="swin_cifar_patch2_window4_32", batch_size=128, epochs=10,
                 learning_rate=1e-3)


def accumulating(accum):
    return dataclasses.replace(BASE, accum=accum)


@pytest.mark.parametrize("scaling, factor", [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_plan_scales_the_rate_from_the_micro_batch(scaling, factor):
    accumulated, effective = gao.plan(accumulating(4), compare=True, baseline="effective", lr_scaling=scaling)
    assert (accumulated.batch_size, accumulated.accum, accumulated.micro_batch) == (128, 4, 32)
    assert (effective.batch_size, effective.accum) == (128, 1)
    # Same effective batch: same rate, whatever the scaling; 4x the micro-batch: rate x factor.
    assert math.isclose(accumulated.learning_rate, 1e-3 * factor)
    assert math.isclose(effective.learning_rate, accumulated.learning_rate)
    _, micro = gao.plan(accumulating(4), compare=True, baseline="micro", lr_scaling=scaling)
    assert (micro.batch_size, micro.accum, micro.learning_rate) == (32, 1, 1e-3)


def test_sweep_covers_the_paper_grid():
    runs = gao.plan(accumulating(2), compare=True, sweep=True)
    grid = {(r.batch_size, r.epochs) for r in runs if r.group == "accumulation"}
    assert grid == {(b, e) for b in (32, 64, 128) for e in (10, 20, 50)}
    assert len(runs) == 18 and len({r.name for r in runs}) == 18


def test_plan_rejects_bad_requests():
    with pytest.raises(ValueError, match="baseline"):
        gao.plan(accumulating(4), compare=True, baseline="large")
    with pytest.raises(ValueError, match="larger than the batch size 128"):
        gao.plan(accumulating(256))
    with pytest.raises(ValueError, match="larger than the batch size 32"):  # the sweep's smallest batch
        gao.plan(accumulating(64), sweep=True)


def result(group, batch, accum, accuracy, seconds, losses=(2.0, 1.5, 1.0), precision="float32", batch_norm=False,
           updates=30):
    config = {"dataset": "mnist", "model": "m", "epochs": 3, "batch_size": batch, "accum": accum,
              "precision": precision}
    history = {"loss": list(losses), "val_loss": [2 * v for v in losses]}
    return {"config": config, "group": group, "micro_batch": -(-batch // accum), "test_accuracy": accuracy,
            "test_loss": history["val_loss"][-1], "time_per_epoch": seconds, "history": history,
            "batch_norm": batch_norm, "updates": updates}


def test_comparisons_pair_accumulation_with_its_baseline():
    pairs = gao.comparisons([result("accumulation", 64, 4, 0.9, 12.0), result("baseline-effective", 64, 1, 0.85, 10.0),
                             result("baseline-micro", 16, 1, 0.8, 8.0)])
    assert [(p["baseline"], p["baseline batch"]) for p in pairs] == [("baseline-effective", 64), ("baseline-micro", 16)]
    assert math.isclose(pairs[0]["difference"], 0.05) and math.isclose(pairs[0]["time/epoch ratio"], 1.2)
    assert "| mnist | 3 | 64 | 4 | baseline-effective |" in gao.comparison_table(pairs)


def pair(accumulated_losses, precision="float32", batch_norm=False):
    (only,) = gao.comparisons([
        result("accumulation", 64, 4, 0.9, 12.0, accumulated_losses, precision, batch_norm),
        result("baseline-effective", 64, 1, 0.9, 10.0, precision=precision, batch_norm=batch_norm),
    ])
    return only


def test_identical_is_said_only_within_the_float32_tolerance():
    close = pair((2.0, 1.5, 1.0 + 2e-5))  # train 2e-5, validation 2e-5 relative: within 1e-4
    assert math.isclose(close["largest loss difference"], 2e-5, rel_tol=1e-6)
    assert close["verdict"] == "identical within float32 tolerance"
    apart = pair((2.0, 1.5 * 1.001, 1.0))  # 1e-3 at epoch 2: beyond
    assert math.isclose(apart["largest loss difference"], 1e-3, rel_tol=1e-6)
    assert apart["verdict"].startswith("differ beyond float32 tolerance")
    assert "identical" not in pair((2.0, 1.5, float("nan")))["verdict"]  # a diverged run is not identical


def test_mixed_precision_and_batch_norm_are_judged_by_what_they_can_reach():
    assert pair((2.0, 1.5, 1.002), precision="mixed_bfloat16")["verdict"].startswith("within the mixed_bfloat16")
    assert pair((2.0, 1.5, 1.01), precision="mixed_bfloat16")["verdict"].startswith("beyond the mixed_bfloat16")
    assert pair((2.0, 1.5, 1.0), batch_norm=True)["verdict"].startswith("not exact: BatchNorm")
    float16 = dict(precision="mixed_float16")
    (skipped,) = gao.comparisons([result("accumulation", 64, 4, 0.9, 12.0, **float16),
                                  result("baseline-effective", 64, 1, 0.9, 10.0, updates=29, **float16)])
    assert skipped["verdict"] == "not exact: loss scaling skipped updates (30 vs 29 applied)"
    micro = gao.comparisons([result("accumulation", 64, 4, 0.9, 12.0), result("baseline-micro", 16, 1, 0.8, 8.0)])
    assert micro[0]["verdict"] == "other batch size: not an exactness check"
    assert "largest loss difference: max over epochs" in gao.comparison_table(micro)
