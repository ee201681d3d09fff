"""Rerun the Performer study (../shared/seeds/003): Performer-ReLU / -softmax with m = 16..128 random
features, global attention, Swin, and 2D / 1D local attention, as its Tables 1 and 2.

    python recipes/performer_study.py --dataset mnist --epochs 60
    python recipes/performer_study.py --dataset cifar10 --models performer_softmax_64,global,local2d,local1d
    tensorboard --logdir logs/performer_study/cifar10           # this study's curves, one run per <arm>/<settings>

Writes, under <logdir>/performer_study/<dataset>/: one TensorBoard run per model, results.csv /
.json / .md, study_table.md (the study's layout, its published figures beside ours) and study.png
(validation curves and a speed/accuracy scatter). Interrupted runs continue with the same command.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfvit.experiments import RunConfig, performer, plot_study, run_all  # noqa: E402
from tfvit.experiments.cli import add_run_arguments, comma_list, prepare_logdir, run_recipe, write_study  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=comma_list, default=list(performer.DEFAULT_MODELS),
                   help=f"comma-separated, from: {', '.join(performer.DEFAULT_MODELS)} (default: all)")
    p.add_argument("--swin-epochs", type=int, default=50, help="epochs for swin (the study: 50)")
    add_run_arguments(p, datasets=performer.BASES, dataset="mnist", epochs=60, batch_size=128, lr=1e-3)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    for m in args.models:
        performer.registry_name(m, args.dataset)  # unknown names fail before any training
    runs = performer.plan(RunConfig.from_args(args, model=""), args.models, swin_epochs=args.swin_epochs)
    out_dir = os.path.join(args.logdir, "performer_study", args.dataset)
    prepare_logdir(args.logdir)
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir, performer.study_table(results))
    figure = plot_study(results, os.path.join(out_dir, "study.png"), title=f"Attention variants on {args.dataset}")
    print(f"figure: {figure}\ncurves: tensorboard --logdir {out_dir}")


if __name__ == "__main__":
    run_recipe(main)
