"""The runs of the GAO study (Aburass & Dorgham 2023, ../shared/seeds/002): Swin trained with and
without gradient accumulation, and what the comparison says.

The study compared accumulation at effective batch B = N x b against plain training at the
micro-batch b, with the same learning rate, and read the accuracy gap as an effect of accumulation.
Accumulation done exactly is large-batch training, so the controlled comparison is against plain
training at the *effective* batch B (``baseline="effective"``): equal results there mean the
implementation is exact; a gap against the micro-batch (``baseline="micro"``) is the effect of batch
size and learning rate, which ``lr_scaling`` (linear: Goyal et al. 2017; sqrt: Krizhevsky 2014)
addresses.

Against the effective batch, tfvit's accumulation is exact: same gradients (``GradientAccumulationModel``),
same dropout and stochastic-depth masks (``tfvit.layers.keyed_random``), same Performer projections.
``comparisons`` checks it on every pair, with the largest relative difference of the per-epoch train and
validation losses against the tolerance of the run's precision policy. What stays non-exact is said there:
BatchNorm normalises each micro-batch with its own statistics; under mixed precision the matrix
products' blocking depends on the batch, so the arms agree only to the policy's precision; and
mixed_float16's loss scaling may skip an overflowing update in one arm and not in the other.
"""

import dataclasses
import os

from tfvit.experiments.report import markdown
from tfvit.training.distribution import writable
from tfvit.training.schedules import scaled_learning_rate

PAPER_BATCHES = (32, 64, 128)
PAPER_EPOCHS = (10, 20, 50)
DEFAULT_MODELS = {"cifar10": "swin_cifar_patch2_window4_32", "cifar100": "swin_cifar_patch2_window4_32",
                  "mnist": "swin_mnist_patch2_window4_28", "fashion_mnist": "swin_mnist_patch2_window4_28"}


def plan(base, compare=False, baseline="effective", lr_scaling="none", sweep=False,
         batches=PAPER_BATCHES, epochs=PAPER_EPOCHS):
    """The RunConfigs of one study invocation.

    ``base`` is the accumulation run: its ``batch_size`` is the effective batch, split into ``accum``
    micro-batches, and its ``learning_rate`` is the rate for the micro-batch size B / accum; each run's
    rate is scaled from there by the ratio of its batch to that micro-batch (``lr_scaling``). ``compare``
    adds the run without accumulation at the effective or the micro-batch size (``baseline``); ``sweep``
    repeats everything over the paper's grid of batches and epochs.
    """
    if baseline not in ("effective", "micro"):
        raise ValueError(f"baseline must be 'effective' or 'micro', got {baseline!r}.")
    grid = [(b, e) for b in batches for e in epochs] if sweep else [(base.batch_size, base.epochs)]
    runs = []
    for batch, num_epochs in grid:
        accumulated = dataclasses.replace(base, batch_size=batch, epochs=num_epochs, group="accumulation")
        micro = accumulated.micro_batch
        lr = lambda size: scaled_learning_rate(base.learning_rate, size, micro, lr_scaling)
        runs.append(dataclasses.replace(accumulated, learning_rate=lr(batch)))
        if compare:
            size = batch if baseline == "effective" else micro
            runs.append(dataclasses.replace(accumulated, accum=1, batch_size=size, learning_rate=lr(size),
                                            group=f"baseline-{baseline}"))
    return runs


# Largest relative difference of per-epoch losses that still reads as "the same training", per policy:
# float32 rounding of summation orders compounds to ~1e-7 over an epoch or two (docs/accumulation.md);
# the mixed policies compute in 16-bit floats, and the arms may differ by one rounding step of the
# loss: 2^-8 for bfloat16's 8 significant bits, 2^-11 for float16's 11.
LOSS_TOLERANCE = {"float32": 1e-4, "mixed_float16": 2.0 ** -11, "mixed_bfloat16": 2.0 ** -8}


def largest_loss_difference(a, b):
    """max over epochs and over train/validation loss of |a - b| / |b|: the per-epoch curves of two runs."""
    differences = []
    for key in ("loss", "val_loss"):
        for x, y in zip(a["history"].get(key, []), b["history"].get(key, [])):
            differences.append(abs(x - y) / max(abs(y), 1e-12) if x == x and y == y else float("inf"))
    return max(differences) if differences else float("nan")


def verdict(a, b, difference):
    """What the pair shows: an exactness check only at equal effective batch and without BatchNorm."""
    precision = a["config"].get("precision", "float32")
    if b["config"]["batch_size"] != a["config"]["batch_size"]:
        return "other batch size: not an exactness check"
    if a.get("batch_norm") or b.get("batch_norm"):
        return f"not exact: BatchNorm normalises each micro-batch ({difference:.1e})"
    if a.get("updates") != b.get("updates"):
        # mixed_float16's dynamic loss scaling skips an update whose float16 gradient overflowed; a whole
        # batch's weight-gradient sums overflow where a micro-batch's do not, so the arms can skip differently.
        return f"not exact: loss scaling skipped updates ({a.get('updates')} vs {b.get('updates')} applied)"
    tolerance = LOSS_TOLERANCE.get(precision, LOSS_TOLERANCE["float32"])
    within = difference <= tolerance
    if precision == "float32":
        return "identical within float32 tolerance" if within else f"differ beyond float32 tolerance ({tolerance:g})"
    return f"{'within' if within else 'beyond'} the {precision} tolerance ({tolerance:.2g})"


def comparisons(results):
    """Accumulation vs its baseline at each (dataset, batch, epochs): the differences the paper discussed,
    and whether the pair trained identically (``verdict``)."""
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
                loss_difference = largest_loss_difference(a, b)
                pairs.append({
                    "dataset": dataset, "epochs": num_epochs, "effective batch": a["config"]["batch_size"],
                    "accum": a["config"]["accum"], "baseline": b["group"], "baseline batch": b["config"]["batch_size"],
                    "test acc (accum)": a["test_accuracy"], "test acc (baseline)": b["test_accuracy"],
                    "difference": a["test_accuracy"] - b["test_accuracy"],
                    "test loss (accum)": a["test_loss"], "test loss (baseline)": b["test_loss"],
                    "largest loss difference": loss_difference, "verdict": verdict(a, b, loss_difference),
                    "time/epoch ratio": a["time_per_epoch"] / b["time_per_epoch"],
                })
    return pairs


def comparison_table(pairs):
    """Markdown table of ``comparisons``, with a note on what "largest loss difference" is."""
    if not pairs:
        return ""
    header = list(pairs[0])

    def fmt(value, column):
        if column == "largest loss difference":
            return f"{value:.1e}"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [markdown(header, [[fmt(p[h], h) for h in header] for p in pairs])]
    tolerances = ", ".join(f"{policy} {tolerance:.2g}" for policy, tolerance in LOSS_TOLERANCE.items())
    lines += ["", "largest loss difference: max over epochs of |accum - baseline| / |baseline| of the train and "
                  f"validation losses; tolerances: {tolerances}."]
    return "\n".join(lines)


def write_comparison(results, out_dir):
    """comparison.md of the study's pairs (empty without ``--compare``); returns the table."""
    table = comparison_table(comparisons(results))
    with open(os.path.join(writable(out_dir), "comparison.md"), "w") as f:  # on the chief: out_dir itself
        f.write(table + "\n")
    return table
