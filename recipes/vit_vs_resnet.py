"""Rerun the ViT-versus-ResNet study (../shared/seeds/001).

Problem 1: ViT 2L-2H-128, 4L-4H-256, 6L-8H-384 and 8L-8H-512 against ResNet-18, from scratch on CIFAR-10;
parameters, MACs, test accuracy and time per epoch:
    python recipes/vit_vs_resnet.py --problem 1 --epochs 30
Problem 2: Swin-Tiny and Swin-Small on CIFAR-100 at 224x224: linear probe and full fine-tuning of ImageNet
weights, and training from scratch (the study's two columns were the first two; see
tfvit/experiments/vit_vs_resnet.py):
    python recipes/vit_vs_resnet.py --problem 2 --pretrained --epochs 5     # the registry's timm checkpoints
    python recipes/vit_vs_resnet.py --problem 2 --checkpoint Swin-Tiny=swin_tiny.safetensors \\
        --checkpoint Swin-Small=hf-hub:microsoft/swin-small-patch4-window7-224 --epochs 5
    tensorboard --logdir logs/vit_vs_resnet/problem1_cifar10           # this study's curves, one run per <arm>/<settings>

Writes, under <logdir>/vit_vs_resnet/problem<N>_<dataset>/: one TensorBoard run per model, results.csv /
.json / .md, study_table.md (the study's layout, its figures beside ours) and curves.png. Interrupted runs
continue with the same command.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfvit.experiments import RunConfig, plot_runs, run_all  # noqa: E402
from tfvit.experiments import vit_vs_resnet as study  # noqa: E402
from tfvit.experiments.cli import (  # noqa: E402
    UsageError, add_checkpoint_arguments, add_run_arguments, comma_list, prepare_logdir, resolve_checkpoints,
    run_recipe, write_study,
)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", choices=["1", "2"], required=True)
    p.add_argument("--models", type=comma_list, help="comma-separated rows; problem 1: " + ", ".join(study.PROBLEM1)
                   + "; problem 2: " + ", ".join(study.PROBLEM2_MODELS) + " (default: all)")
    p.add_argument("--arms", type=comma_list,
                   help="problem 2: comma-separated from head, full, scratch (default: all)")
    add_checkpoint_arguments(p, "problem 2: Swin-Tiny or Swin-Small; ImageNet weights")
    # --dataset: cifar10 for problem 1, cifar100 for problem 2 (as the study) unless given.
    add_run_arguments(p, datasets=("cifar10", "cifar100"), dataset=None, epochs=30, batch_size=128, lr=1e-3,
                      augment="crop_flip")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    dataset = args.dataset or ("cifar10" if args.problem == "1" else "cifar100")
    base = RunConfig.from_args(args, model="", dataset=dataset)
    if args.problem == "1":
        if args.checkpoint or args.pretrained:
            raise UsageError("--checkpoint and --pretrained are for --problem 2; problem 1 trains every model from "
                             "scratch, as the study did.")
        if args.arms is not None:
            raise UsageError("--arms is for --problem 2 (linear probe, fine-tuning, from scratch); problem 1 trains "
                             "every model from scratch. Leave --arms out, or choose rows with --models.")
        runs, skipped, tabulate = study.plan_problem1(base, args.models), [], study.problem1_table
    else:
        selected = args.models or list(study.PROBLEM2_MODELS)
        pretrained = {m: study.PROBLEM2_MODELS.get(m, m) for m in selected} if args.pretrained else None
        checkpoints = resolve_checkpoints(args.checkpoint, pretrained)
        runs, skipped = study.plan_problem2(base, args.models, args.arms or list(study.ARMS), checkpoints)
        tabulate = study.problem2_table
    for line in skipped:
        print(f"not run: {line}")
    if not runs:
        raise SystemExit("error: nothing to run: " + "; ".join(skipped))
    out_dir = os.path.join(args.logdir, "vit_vs_resnet", f"problem{args.problem}_{dataset}")
    prepare_logdir(args.logdir)
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir, tabulate(results), [f"not run: {line}" for line in skipped])
    curves = plot_runs(results, os.path.join(out_dir, "curves.png"),
                       title=f"seed 001 problem {args.problem} on {dataset}")
    print(f"figure: {curves}\ncurves: tensorboard --logdir {out_dir}")


if __name__ == "__main__":
    run_recipe(main)
