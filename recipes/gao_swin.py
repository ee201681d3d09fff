"""Rerun the GAO study: Swin with and without gradient accumulation (../shared/seeds/002).

    python recipes/gao_swin.py --accum 4                          # CIFAR-10, effective batch 128, 10 epochs
    python recipes/gao_swin.py --accum 4 --compare                # + the same run without accumulation
    python recipes/gao_swin.py --accum 4 --compare --baseline micro --lr-scaling linear
    python recipes/gao_swin.py --accum 4 --compare --sweep --dataset mnist   # the paper's grid
    tensorboard --logdir logs/gao_swin/cifar10           # this study's curves, one run per <arm>/<settings>

--lr is the rate for the micro-batch size (batch / accum); --lr-scaling scales each run's rate from it.
Writes, under <logdir>/gao_swin/<dataset>/: one TensorBoard run per configuration, results.csv /
.json / .md, comparison.md and results.png. A run that is interrupted continues where it stopped
when the same command is run again; finished runs are not trained again.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfvit.experiments import RunConfig, gao, plot_runs, run_all  # noqa: E402
from tfvit.experiments.cli import add_run_arguments, prepare_logdir, run_recipe, write_study  # noqa: E402
from tfvit.models import model_config  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", action="store_true", help="also train without accumulation (same seed)")
    p.add_argument("--baseline", choices=["effective", "micro"], default="effective",
                   help="batch of the comparison run: the effective batch (controlled) or the micro-batch (the paper's)")
    p.add_argument("--lr-scaling", choices=["none", "linear", "sqrt"], default="none",
                   help="scale the rate with each run's batch relative to the micro-batch")
    p.add_argument("--sweep", action="store_true", help="the paper's grid: batch 32/64/128 x epochs 10/20/50")
    p.add_argument("--model", help="registry name (default: the 32x32 or 28x28 Swin for the dataset)")
    add_run_arguments(p, datasets=gao.DEFAULT_MODELS, accum=4, epochs=10, batch_size=128, lr=1e-3)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.model:
        model_config(args.model)  # an unknown name fails before any training, with the registry's suggestions
    base = RunConfig.from_args(args, model=args.model or gao.DEFAULT_MODELS[args.dataset])
    runs = gao.plan(base, compare=args.compare, baseline=args.baseline, lr_scaling=args.lr_scaling, sweep=args.sweep)
    out_dir = os.path.join(args.logdir, "gao_swin", args.dataset)
    prepare_logdir(args.logdir)
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir)
    comparison = gao.write_comparison(results, out_dir)
    if comparison:
        print(comparison + "\n")
    figure = plot_runs(results, os.path.join(out_dir, "results.png"),
                       title=f"Swin with and without gradient accumulation, {args.dataset}")
    print(f"figure: {figure}\ncurves: tensorboard --logdir {out_dir}")


if __name__ == "__main__":
    run_recipe(main)
