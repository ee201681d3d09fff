"""Rerun the GAO study: Swin with and without gradient accumulation (../shared/seeds/002).

    python recipes/gao_swin.py --accum 4                          # CIFAR-10, effective batch 128, 10 epochs
    python recipes/gao_swin.py --accum 4 --compare                # + the same run without accumulation
    python recipes/gao_swin.py --accum 4 --compare --baseline micro --lr-scaling linear
    python recipes/gao_swin.py --accum 4 --compare --sweep --dataset mnist   # the paper's grid
    tensorboard --logdir logs

Writes, under <logdir>/gao_swin/<dataset>/: one TensorBoard run per configuration, results.csv /
.json / .md, comparison.md and results.png. A run that is interrupted continues where it stopped
when the same command is run again; finished runs are not trained again.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfvit.experiments import RunConfig, plot_runs, run_all, write_tables  # noqa: E402
from tfvit.experiments import gao  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accum", type=int, default=4, help="gradient accumulation steps N (default 4)")
    p.add_argument("--batch-size", type=int, default=128, help="effective batch per optimizer update (default 128)")
    p.add_argument("--compare", action="store_true", help="also train without accumulation (same seed)")
    p.add_argument("--baseline", choices=["effective", "micro"], default="effective",
                   help="batch of the comparison run: the effective batch (controlled) or the micro-batch (the paper's)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate for the micro-batch size (default 1e-3)")
    p.add_argument("--lr-scaling", choices=["none", "linear", "sqrt"], default="none",
                   help="scale the rate with each run's batch relative to the micro-batch")
    p.add_argument("--sweep", action="store_true", help="the paper's grid: batch 32/64/128 x epochs 10/20/50")
    p.add_argument("--dataset", choices=sorted(gao.DEFAULT_MODELS), default="cifar10")
    p.add_argument("--model", help="registry name (default: the 32x32 or 28x28 Swin for the dataset)")
    p.add_argument("--data-dir", help="folder with the datasets' official files (else $TFVIT_DATA_DIR, then tfds)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--weight-decay", type=float, help="decoupled weight decay (default: AdamW 0.05, SGD 1e-4)")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment", default="", help="comma-separated: crop_flip, randaugment, mixup, cutmix")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate (the study's regularisation question)")
    p.add_argument("--drop-path", type=float, default=-1.0, help="stochastic depth rate (default: the model's)")
    p.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"], default="float32")
    p.add_argument("--jit", action="store_true", help="compile train steps with XLA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0: off)")
    p.add_argument("--logdir", default="logs")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N training images (quick runs)")
    p.add_argument("--limit-test", type=int, default=0, help="use only the first N test images")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.data_dir:
        os.environ["TFVIT_DATA_DIR"] = args.data_dir
    base = RunConfig(
        dataset=args.dataset, model=args.model or gao.DEFAULT_MODELS[args.dataset], batch_size=args.batch_size,
        epochs=args.epochs, learning_rate=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, augment=args.augment,
        dropout=args.dropout, drop_path=args.drop_path, precision=args.precision, jit=args.jit, seed=args.seed,
        limit_train=args.limit_train, limit_test=args.limit_test, patience=args.patience,
    )
    runs = gao.plan(base, args.accum, compare=args.compare, baseline=args.baseline, lr_scaling=args.lr_scaling,
                    sweep=args.sweep)
    out_dir = os.path.join(args.logdir, "gao_swin", args.dataset)
    results = run_all(runs, out_dir, verbose=args.verbose)
    paths = write_tables(results, out_dir)
    pairs = gao.comparisons(results)
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write(gao.comparison_table(pairs) + "\n")
    figure = plot_runs(results, os.path.join(out_dir, "results.png"),
                       title=f"Swin with and without gradient accumulation, {args.dataset}")
    print("\n" + open(paths["md"]).read())
    if pairs:
        print(gao.comparison_table(pairs) + "\n")
    print(f"tables: {paths['md']}, {paths['csv']}, {paths['json']}\nfigure: {figure}\n"
          f"curves: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
