"""The runs of the GAO study (Aburass & Dorgham 2023, ../shared/seeds/002): Swin trained with and
without gradient accumulation, and what the comparison says.

The study compared accumulation at effective batch B = N x b against plain training at the
micro-batch b, with the same learning rate, and read the accuracy gap as an effect of accumulation.
Accumulation done exactly is large-batch training, so the controlled comparison is against plain
training at the *effective* batch B (``baseline="effective"``): equal results there mean the
implementation is exact; a gap against the micro-batch (``baseline="micro"``) is the effect of batch
size and learning rate, which ``lr_scaling`` (linear: Goyal et al. 2017; sqrt: Krizhevsky 2014)
addresses.
"""

import dataclasses

from tfvit.training.schedules import scaled_learning_rate

PAPER_BATCHES = (32, 64, 128)
PAPER_EPOCHS = (10, 20, 50)
DEFAULT_MODELS = {"cifar10": "swin_cifar_patch2_window4_32", "cifar100": "swin_cifar_patch2_window4_32",
                  "mnist": "swin_mnist_patch2_window4_28", "fashion_mnist": "swin_mnist_patch2_window4_28"}


def plan(base, accum, compare=False, baseline="effective", lr_scaling="none", sweep=False,
         batches=PAPER_BATCHES, epochs=PAPER_EPOCHS):
    """The RunConfigs of one study invocation.

    ``base`` is a RunConfig whose ``batch_size`` is the effective batch and whose ``learning_rate`` is
    the rate for the micro-batch size B / accum; each run's rate is scaled from there by the ratio of
    its batch to that micro-batch (``lr_scaling``). ``sweep`` repeats everything over the paper's grid.
    """
    if baseline not in ("effective", "micro"):
        raise ValueError(f"baseline must be 'effective' or 'micro', got {baseline!r}.")
    grid = [(b, e) for b in batches for e in epochs] if sweep else [(base.batch_size, base.epochs)]
    runs = []
    for batch, num_epochs in grid:
        if accum > batch:
            raise ValueError(f"accum={accum} is larger than the effective batch {batch}.")
        micro = -(-batch // accum)
        lr = lambda size: scaled_learning_rate(base.learning_rate, size, micro, lr_scaling)
        common = dict(batch_size=batch, epochs=num_epochs)
        runs.append(dataclasses.replace(base, accum=accum, learning_rate=lr(batch), group="accumulation", **common))
        if compare:
            size = batch if baseline == "effective" else micro
            runs.append(dataclasses.replace(base, accum=1, learning_rate=lr(size), group=f"baseline-{baseline}",
                                            batch_size=size, epochs=num_epochs))
    return runs


def comparisons(results):
    """Accumulation vs its baseline at each (dataset, batch, epochs): the differences the paper discussed."""
    pairs = []
    by_key = {}
    for r in results:
        c = r["config"]
        by_key.setdefault((c["dataset"], c["model"], c["epochs"]), []).append(r)
    for (dataset, model, num_epochs), group in by_key.items():
        accumulated = [r for r in group if r["group"] == "accumulation"]
        baselines = [r for r in group if r["group"].startswith("baseline")]
        for a in accumulated:
            for b in baselines:
                same = b["config"]["batch_size"] in (a["config"]["batch_size"], a["micro_batch"])
                if not same:
                    continue
                pairs.append({
                    "dataset": dataset, "epochs": num_epochs, "effective batch": a["config"]["batch_size"],
                    "accum": a["config"]["accum"], "baseline": b["group"], "baseline batch": b["config"]["batch_size"],
                    "test acc (accum)": a["test_accuracy"], "test acc (baseline)": b["test_accuracy"],
                    "difference": a["test_accuracy"] - b["test_accuracy"],
                    "time/epoch ratio": a["time_per_epoch"] / b["time_per_epoch"],
                })
    return pairs


def comparison_table(pairs):
    if not pairs:
        return ""
    header = list(pairs[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(p[h]) for h in header) + " |" for p in pairs]
    return "\n".join(lines)
