"""Rerun the fine-tuning study (../shared/seeds/000): ImageNet ViT and Swin fine-tuned on CIFAR-10 at
224x224, partially or fully, and saliency maps on the same test images to compare where they look.

    python recipes/finetune.py --pretrained --modes partial,full --epochs 15   # the registry's timm checkpoints
    python recipes/finetune.py --checkpoint vit_tiny_patch16_224=vit_tiny.safetensors \\
        --checkpoint swin_tiny_patch4_window7_224=hf-hub:microsoft/swin-tiny-patch4-window7-224
    tensorboard --logdir logs/finetune/cifar10           # this study's curves, one run per <arm>/<settings>

Checkpoints are Hugging Face transformers or timm safetensors files or hub repositories (tfvit.convert;
--pretrained: each model's registry checkpoint), and a pretrained run's images are normalised and resized as
its checkpoint's were; a model given none is trained from random weights, and the tables and the figure say
"from scratch" for it.
Writes, under <logdir>/finetune/<dataset>/: one TensorBoard run per (model, mode), results.csv / .json /
.md, study_table.md (with the study's figures), curves.png and saliency.png (per run: tfvit.vis.explain's
map beside Grad-CAM at the study's target). Interrupted
runs continue with the same command.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfvit.experiments import RunConfig, finetune, plot_runs, run_all  # noqa: E402
from tfvit.experiments.cli import (  # noqa: E402
    add_checkpoint_arguments, add_run_arguments, comma_list, non_negative_int, prepare_logdir, resolve_checkpoints,
    run_recipe, write_study,
)
from tfvit.experiments.config import start_label  # noqa: E402
from tfvit.models import list_models  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=comma_list, default=["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"],
                   help="comma-separated registry names (the study: vit_{tiny,base,large}_*, swin_{tiny,base,large}_*)")
    add_checkpoint_arguments(p, "a name of --models; models without one start from scratch")
    p.add_argument("--modes", type=comma_list, default=["partial", "full"], help="comma-separated: partial, full, head")
    p.add_argument("--frozen-blocks", type=int, default=-1,
                   help="partial: blocks (ViT) / stages (Swin) frozen after the patch embedding (default: half)")
    p.add_argument("--layer-decay", type=float, default=0.0, help="layer-wise learning-rate decay, e.g. 0.65 (0: off)")
    p.add_argument("--saliency-images", "--gradcam-images", dest="saliency_images", type=non_negative_int, default=6,
                   help="test images in the saliency figure (0: none; at most --limit-test)")
    p.add_argument("--gradcam-method", default="gradcam", choices=["gradcam", "gradcam++", "scorecam"],
                   help="the Grad-CAM method drawn beside tfvit.vis.explain's map, at the study's target")
    add_run_arguments(p, epochs=15, batch_size=64, lr=1e-4, weight_decay=0.05)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    unknown = [m for m in args.models if m not in set(list_models())]
    if unknown:
        raise ValueError(f"unknown models {unknown}; see tfvit.list_models() or python -m tools.model_stats.")
    checkpoints = resolve_checkpoints(args.checkpoint, {m: m for m in args.models} if args.pretrained else None)
    runs = finetune.plan(RunConfig.from_args(args, model=""), args.models, args.modes, checkpoints)
    for model in args.models:
        print(f"{model}: {start_label(checkpoints.get(model, ''))}"
              + ("" if model in checkpoints else " (no --checkpoint or --pretrained given for it)"))
    out_dir = os.path.join(args.logdir, "finetune", args.dataset)
    prepare_logdir(args.logdir)
    results = run_all(runs, out_dir, verbose=args.verbose)
    write_study(results, out_dir, finetune.study_table(results))
    print(f"curves: {plot_runs(results, os.path.join(out_dir, 'curves.png'), title=f'Fine-tuning on {args.dataset}')}")
    images = finetune.saliency_images(args.saliency_images, args.limit_test)
    if images:
        figure = finetune.saliency_figure(results, out_dir, os.path.join(out_dir, "saliency.png"),
                                          num_images=images, method=args.gradcam_method)
        print(f"saliency: {figure}")
    print(f"TensorBoard: tensorboard --logdir {out_dir}")


if __name__ == "__main__":
    run_recipe(main)
