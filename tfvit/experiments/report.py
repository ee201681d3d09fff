"""Tables and figures of a study's runs: CSV, JSON, Markdown and a PNG.

The table columns are the GAO study's (../shared/seeds/002): dataset, batch, accumulation steps,
learning rate, epochs, train and test accuracy, test loss, time per epoch and per step, plus peak
memory. The figure follows its figures 3-6: accuracy per epoch for every run (test solid, train
dashed) and the time per epoch of each run.

results.json is strict JSON (``tfvit.experiments.json_output``): a value that is not finite is written as
``null``, and each run carries a ``status``: ``"ok"``, or ``"non-finite: <keys>"`` naming the values that
were NaN or infinite (``"non-finite: test_loss, history.loss"``).
"""

import csv
import os

from tfvit.experiments.json_output import non_finite_keys, write_json
from tfvit.training.distribution import writable

COLUMNS = [
    ("dataset", lambda r: r["config"]["dataset"]),
    ("model", lambda r: r["config"]["model"]),
    ("run", lambda r: r["group"]),
    ("batch", lambda r: r["config"]["batch_size"]),
    ("micro-batch", lambda r: r["micro_batch"]),
    ("accum", lambda r: r["config"]["accum"]),
    ("lr", lambda r: f"{r['config']['learning_rate']:.3g}"),
    ("epochs", lambda r: r["epochs_run"]),
    ("train acc", lambda r: f"{r['train_accuracy']:.4f}"),
    ("test acc", lambda r: f"{r['test_accuracy']:.4f}"),
    ("test loss", lambda r: f"{r['test_loss']:.4f}"),
    # Steady state: mean over the epochs that built no step (not a process's first); the first epoch,
    # with tracing and compilation, in its own column.
    ("time/epoch (s, steady)", lambda r: f"{r['time_per_epoch']:.1f}"),
    ("first epoch (s)", lambda r: f"{r.get('first_epoch_time', float('nan')):.1f}"),
    ("time/step (s, steady)", lambda r: f"{r['time_per_step']:.3f}"),
    ("peak memory (MB)", lambda r: f"{r['peak_memory_mb']:.0f}"),
]


def rows(results):
    return [[str(value(r)) for _, value in COLUMNS] for r in results]


def markdown(header, body):
    """A Markdown table: ``header`` (column names) and ``body`` (rows of cells, turned into text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)


def markdown_table(results):
    """The runs' table (``COLUMNS``) in Markdown."""
    return markdown([name for name, _ in COLUMNS], rows(results))


def with_status(result):
    """A copy of the run ``result`` with ``status`` first: ``"non-finite: <keys>"`` naming the values that are
    NaN or infinite (``non_finite_keys``), else the status it already has, else ``"ok"``."""
    rest = {key: value for key, value in result.items() if key != "status"}
    keys = non_finite_keys(rest)
    return {"status": f"non-finite: {', '.join(keys)}" if keys else result.get("status", "ok"), **rest}


def write_tables(results, out_dir, stem="results"):
    """Write ``stem``.csv, .json (full results, curves included, each with its ``status``: ``with_status``;
    strict JSON, non-finite values as null) and .md; return their paths. On a multi-worker job's other
    workers, under their temporary folder (``tfvit.training.distribution.writable``): only the chief writes."""
    out_dir = writable(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"{stem}.{ext}") for ext in ("csv", "json", "md")}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([name for name, _ in COLUMNS])
        writer.writerows(rows(results))
    write_json(paths["json"], [with_status(r) for r in results])
    with open(paths["md"], "w") as f:
        f.write(markdown_table(results) + "\n")
    return paths


def _save(fig, path, title):
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = writable(path)  # only a multi-worker job's chief writes in place
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_runs(results, path, title=""):
    """Accuracy per epoch of every run (test solid, train dashed) and time per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (curves, times) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    labels = []
    for i, r in enumerate(results):
        label = f"{r['group'] or 'run'}: b{r['config']['batch_size']} acc{r['config']['accum']} " \
                f"lr{r['config']['learning_rate']:.2g} e{r['config']['epochs']}"
        labels.append(label)
        history = r["history"]
        epochs = [int(e) + 1 for e in history.get("epoch", [])]
        color = f"C{i % 10}"
        curves.plot(epochs, history.get("val_accuracy", []), color=color, marker="o", ms=3, label=f"{label} test")
        curves.plot(epochs, history.get("accuracy", []), color=color, ls="--", alpha=0.7, label=f"{label} train")
    curves.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    curves.set_xlabel("epoch")
    curves.set_ylabel("accuracy")
    curves.set_title("accuracy per epoch (solid: test, dashed: train)")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7)
    positions = range(len(results))
    times.barh(list(positions), [r["time_per_epoch"] for r in results], color=[f"C{i % 10}" for i in positions])
    times.set_yticks(list(positions), labels, fontsize=7)
    times.invert_yaxis()
    times.set_xlabel("seconds per epoch")
    times.set_title("time per epoch")
    return _save(fig, path, title)


def plot_study(results, path, title=""):
    """Validation accuracy per epoch of each model, and a speed/accuracy scatter, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (curves, scatter) = plt.subplots(1, 2, figsize=(13, 5))
    for i, r in enumerate(results):
        history = r["history"]
        epochs = [int(e) + 1 for e in history.get("epoch", [])]
        style = "-" if i < 10 else "--"
        curves.plot(epochs, history.get("val_accuracy", []), style, color=f"C{i % 10}", label=r["group"] or r["name"])
        scatter.scatter(1000 * r["time_per_step"], r["test_accuracy"], color=f"C{i % 10}", s=40)
        scatter.annotate(r["group"] or r["name"], (1000 * r["time_per_step"], r["test_accuracy"]), fontsize=7,
                         xytext=(4, 3), textcoords="offset points")
    curves.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation accuracy")
    curves.set_title("validation accuracy per epoch")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7, ncol=2)
    scatter.set_xlabel("time per step (ms)")
    scatter.set_ylabel("final validation accuracy")
    scatter.set_title("speed and accuracy")
    scatter.grid(alpha=0.3)
    return _save(fig, path, title)
