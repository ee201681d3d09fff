"""Rerun the ViT-versus-ResNet study (../shared/seeds/001).

Problem 1: ViT 2L-2H-128, 4L-4H-256, 6L-8H-384 and 8L-8H-512 against ResNet-18, from scratch on CIFAR-10;
parameters, MACs, test accuracy and time per epoch:
    python recipes/vit_vs_resnet.py --problem 1 --epochs 30
Problem 2: Swin-Tiny and Swin-Small on CIFAR-100 at 224x224: linear probe and full fine-tuning of ImageNet
weights, and training from scratch (the study's two columns were the first two; see
tfvit/experiments/vit_vs_resnet.py):
    python recipes/vit_vs_resnet.py --problem 2 --checkpoint Swin-Tiny=swin_tiny.safetensors \\
        --checkpoint Swin-Small=swin_small.safetensors --epochs 5
    tensorboard --logdir logs

Writes, under <logdir>/vit_vs_resnet/problem<N>_<dataset>/: one TensorBoard run per model, results.csv /
.json / .md, study_table.md (the study's layout, its figures beside ours) and curves.png. Interrupted runs
continue with the same command.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfvit.experiments import RunConfig, plot_runs, run_all  # noqa: E402
from tfvit.experiments import vit_vs_resnet as study  # noqa: E402
from tfvit.experiments.cli import add_run_arguments, checkpoint_pair, existing_checkpoints, write_study  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", choices=["1", "2"], required=True)
    p.add_argument("--models", help="comma-separated rows; problem 1: " + ", ".join(study.PROBLEM1)
                   + "; problem 2: " + ", ".join(study.PROBLEM2_MODELS) + " (default: all)")
    p.add_argument("--arms", default=",".join(study.ARMS), help="problem 2: comma-separated from head, full, scratch")
    p.add_argument("--checkpoint", action="append", type=checkpoint_pair, default=[], metavar="MODEL=PATH",
                   help="problem 2: ImageNet .safetensors for Swin-Tiny / Swin-Small (repeatable)")
    p.add_argument("--dataset", choices=["cifar10", "cifar100"],
                   help="default: cifar10 for problem 1, cifar100 for problem 2 (as the study)")
    p.add_argument("--image-size", type=int, default=0,
                   help="resize images to this side (default: the model's own, 32 for problem 1, 224 for problem 2)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per model (the study's problem 2: 5)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--accum", type=int, default=1, help="micro-batches per update (exact gradient accumulation)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, warmup, cosine)")
    p.add_argument("--augment", default="crop_flip", help="training augmentation ('' for none)")
    add_run_arguments(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    dataset = args.dataset or ("cifar10" if args.problem == "1" else "cifar100")
    models = None if not args.models else [m.strip() for m in args.models.split(",") if m.strip()]
    if args.data_dir:
        os.environ["TFVIT_DATA_DIR"] = args.data_dir
    base = RunConfig(dataset=dataset, model="", batch_size=args.batch_size, accum=args.accum, epochs=args.epochs,
                     learning_rate=args.lr, augment=args.augment, precision=args.precision, jit=args.jit,
                     seed=args.seed, limit_train=args.limit_train, limit_test=args.limit_test,
                     image_size=args.image_size)
    if args.problem == "1":
        runs, skipped, tabulate = study.plan_problem1(base, models), [], study.problem1_table
    else:
        checkpoints = existing_checkpoints(args.checkpoint)
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        runs, skipped = study.plan_problem2(base, models, arms, checkpoints)
        tabulate = study.problem2_table
    for line in skipped:
        print(f"not run: {line}")
    if not runs:
        raise SystemExit("nothing to run: " + "; ".join(skipped))
    out_dir = os.path.join(args.logdir, "vit_vs_resnet", f"problem{args.problem}_{dataset}")
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir, tabulate(results), [f"not run: {line}" for line in skipped])
    curves = plot_runs(results, os.path.join(out_dir, "curves.png"),
                       title=f"seed 001 problem {args.problem} on {dataset}")
    print(f"figure: {curves}\ncurves: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
