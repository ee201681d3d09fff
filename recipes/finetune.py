"""Rerun the fine-tuning study (../shared/seeds/000): ImageNet ViT and Swin fine-tuned on CIFAR-10 at
224x224, partially or fully, and Grad-CAM on the same test images to compare where they look.

    python recipes/finetune.py --checkpoint vit_tiny_patch16_224=vit_tiny.safetensors \\
        --checkpoint swin_tiny_patch4_window7_224=swin_tiny.safetensors --modes partial,full --epochs 15
    tensorboard --logdir logs

Checkpoints are Hugging Face transformers or timm .safetensors files (tfvit.convert); a model given no
checkpoint is trained from random weights, and the tables and the figure say "from scratch" for it.
Writes, under <logdir>/finetune/<dataset>/: one TensorBoard run per (model, mode), results.csv / .json /
.md, study_table.md (with the study's figures), curves.png and gradcam.png (one row per run). Interrupted
runs continue with the same command.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfvit.experiments import RunConfig, plot_runs, run_all  # noqa: E402
from tfvit.experiments import finetune  # noqa: E402
from tfvit.experiments.cli import add_run_arguments, checkpoint_pair, existing_checkpoints, write_study  # noqa: E402
from tfvit.experiments.run import start_label  # noqa: E402
from tfvit.models import list_models  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vit_tiny_patch16_224,swin_tiny_patch4_window7_224",
                   help="comma-separated registry names (the study: vit_{tiny,base,large}_*, swin_{tiny,base,large}_*)")
    p.add_argument("--checkpoint", action="append", type=checkpoint_pair, default=[], metavar="MODEL=PATH",
                   help="a .safetensors checkpoint for MODEL (repeatable); models without one start from scratch")
    p.add_argument("--modes", default="partial,full", help="comma-separated: partial, full, head")
    p.add_argument("--frozen-blocks", type=int, default=-1,
                   help="partial: blocks (ViT) / stages (Swin) frozen after the patch embedding (default: half)")
    p.add_argument("--layer-decay", type=float, default=0.0, help="layer-wise learning-rate decay, e.g. 0.65 (0: off)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "mnist", "fashion_mnist"])
    p.add_argument("--image-size", type=int, default=0, help="resize images to this side (default: the model's, 224)")
    p.add_argument("--epochs", type=int, default=15, help="epochs per run (the study: 15-30)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--accum", type=int, default=1, help="micro-batches per update (exact gradient accumulation)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of AdamW with warmup and cosine decay")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--gradcam-images", type=int, default=6, help="test images in the Grad-CAM figure (0: none)")
    p.add_argument("--gradcam-method", default="gradcam", choices=["gradcam", "gradcam++", "scorecam"])
    add_run_arguments(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    known = set(list_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown models {unknown}; see tfvit.list_models() or python tools/model_stats.py.")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    checkpoints = existing_checkpoints(args.checkpoint)
    if args.data_dir:
        os.environ["TFVIT_DATA_DIR"] = args.data_dir
    base = RunConfig(dataset=args.dataset, model="", batch_size=args.batch_size, accum=args.accum, epochs=args.epochs,
                     learning_rate=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                     precision=args.precision, jit=args.jit, seed=args.seed, limit_train=args.limit_train,
                     limit_test=args.limit_test, image_size=args.image_size, frozen_blocks=args.frozen_blocks,
                     layer_decay=args.layer_decay)
    runs = finetune.plan(base, models, modes, checkpoints)
    for model in models:
        print(f"{model}: {start_label(checkpoints.get(model, ''))}"
              + ("" if model in checkpoints else " (no --checkpoint given for it)"))
    out_dir = os.path.join(args.logdir, "finetune", args.dataset)
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir, finetune.study_table(results))
    print(f"curves: {plot_runs(results, os.path.join(out_dir, 'curves.png'), title=f'Fine-tuning on {args.dataset}')}")
    if args.gradcam_images:
        figure = finetune.saliency_figure(results, out_dir, os.path.join(out_dir, "gradcam.png"),
                                          num_images=args.gradcam_images, method=args.gradcam_method)
        print(f"{args.gradcam_method}: {figure}")
    print(f"TensorBoard: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
