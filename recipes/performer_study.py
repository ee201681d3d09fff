"""Rerun the Performer study (../shared/seeds/003): Performer-ReLU / -softmax with m = 16..128 random
features, global attention, Swin, and 2D / 1D local attention, as its Tables 1 and 2.

    python recipes/performer_study.py --dataset mnist --epochs 60
    python recipes/performer_study.py --dataset cifar10 --models performer_softmax_64,global,local2d,local1d
    tensorboard --logdir logs

Writes, under <logdir>/performer_study/<dataset>/: one TensorBoard run per model, results.csv /
.json / .md, study_table.md (the study's layout, its published figures beside ours) and study.png
(validation curves and a speed/accuracy scatter). Interrupted runs continue with the same command.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfvit.experiments import RunConfig, plot_study, run_all  # noqa: E402
from tfvit.experiments import performer  # noqa: E402
from tfvit.experiments.cli import add_run_arguments, write_study  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(performer.DEFAULT_MODELS),
                   help=f"comma-separated, from: {', '.join(performer.DEFAULT_MODELS)} (default: all)")
    p.add_argument("--dataset", choices=sorted(performer.BASES), default="mnist")
    p.add_argument("--epochs", type=int, default=60, help="epochs per model (the study: 60)")
    p.add_argument("--swin-epochs", type=int, default=50, help="epochs for swin (the study: 50)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    add_run_arguments(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        performer.registry_name(m, args.dataset)  # unknown names fail before any training
    if args.data_dir:
        os.environ["TFVIT_DATA_DIR"] = args.data_dir
    base = RunConfig(dataset=args.dataset, model="", batch_size=args.batch_size, epochs=args.epochs,
                     learning_rate=args.lr, precision=args.precision, jit=args.jit, seed=args.seed,
                     limit_train=args.limit_train, limit_test=args.limit_test)
    runs = performer.plan(base, models, swin_epochs=args.swin_epochs)
    out_dir = os.path.join(args.logdir, "performer_study", args.dataset)
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir, performer.study_table(results))
    figure = plot_study(results, os.path.join(out_dir, "study.png"), title=f"Attention variants on {args.dataset}")
    print(f"figure: {figure}\ncurves: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
