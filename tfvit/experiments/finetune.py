"""The runs of the fine-tuning study (../shared/seeds/000): ImageNet ViT and Swin (tiny / base / large)
fine-tuned on CIFAR-10 resized to 224x224, partially (early layers frozen) or fully, then saliency maps on the
same test images to compare where ViT and Swin look: ``tfvit.vis.explain`` beside Grad-CAM at the study's target.

A run starts from a checkpoint when one is given for its model (``tfvit.convert`` reads Hugging Face and
timm safetensors files) and from random weights otherwise; the run's label says which, because a
"fine-tuned" model trained from scratch is a different experiment.
"""

import dataclasses
import os

import numpy as np

from tfvit.experiments.config import start_label
from tfvit.experiments.report import markdown

VIT_MODELS = ("vit_tiny_patch16_224", "vit_base_patch32_224", "vit_large_patch16_224")
SWIN_MODELS = ("swin_tiny_patch4_window7_224", "swin_base_patch4_window7_224", "swin_large_patch4_window7_224")
MODES = ("partial", "full")
# The study's Table 3-1.1: test accuracy (%) of ViT and Swin after 15-30 epochs of AdamW + cosine on the
# full CIFAR-10, keyed (size, mode). Its third row is labelled "Tiny Patch16 (Partial)" a second time,
# but its text attributes those figures to the Large models; the mode of that row is not stated.
PUBLISHED = {
    ("base", "partial"): (95.69, 97.63),
    ("tiny", "partial"): (89.41, 97.32),
    ("large", "?"): (98.55, 99.01),
    ("base", "full"): (92.69, 94.52),
}


def model_size(name):
    """"tiny", "small", "base" or "large" from a registry name (None when it names none)."""
    return next((size for size in ("tiny", "small", "base", "large") if f"_{size}_" in name), None)


def plan(base, models, modes, checkpoints=None):
    """One RunConfig per (model, mode); ``checkpoints`` maps a model name to its checkpoint (a .safetensors file
    or folder, or a hub repository ``hf-hub:ORG/NAME``)."""
    checkpoints = checkpoints or {}
    unknown = sorted(set(checkpoints) - set(models))
    if unknown:
        raise ValueError(f"checkpoints were given for {unknown}, which are not among the models {list(models)}.")
    bad = [m for m in modes if m not in ("partial", "full", "head")]
    if bad:
        raise ValueError(f"fine-tuning modes must be 'partial', 'full' or 'head', got {bad}.")
    runs = []
    for model in models:
        pretrained = checkpoints.get(model, "")
        for mode in modes:
            runs.append(dataclasses.replace(
                base, model=model, pretrained=pretrained, finetune=mode,
                group=f"{model} {mode} ({start_label(pretrained)})",
            ))
    return runs


def study_table(results):
    """Test accuracy of each run beside the study's figure for the same model size and mode."""
    header = ["model", "mode", "start", "params (M)", "trainable (M)", "test acc", "time/epoch (s, steady)",
              "study: test acc"]
    body = []
    for r in results:
        config = r["config"]
        family = 0 if config["model"].startswith("vit") else 1
        paper = PUBLISHED.get((model_size(config["model"]), config["finetune"]))
        body.append([config["model"], config["finetune"], start_label(config["pretrained"]),
                     f"{r['params'] / 1e6:.2f}", f"{r['trainable_params'] / 1e6:.2f}", f"{r['test_accuracy']:.4f}",
                     f"{r['time_per_epoch']:.1f}", f"{paper[family]:.2f}%" if paper else ""])
    return markdown(header, body)


def saliency_images(requested, limit_test=0):
    """How many test images the saliency figure explains: ``requested``, but no more than a quick run's test set
    (``limit_test`` images; 0: the whole set), which is what a user who limits it asks for (a map per image and
    run can take minutes at 224x224). Says so on stdout when it takes fewer."""
    if limit_test and requested > limit_test:
        print(f"saliency: the first {limit_test} test images (--limit-test {limit_test}), not {requested}")
        return limit_test
    return requested


def saliency_figure(results, runs_dir, path, num_images=6, method="gradcam", data_dir=None):
    """Two rows per run on the same first ``num_images`` test images, for the true class of each image:
    ``tfvit.vis.explain`` (method "auto": the method measured to point at the evidence for the model's family,
    docs/saliency.md) and ``method`` of the Grad-CAM family at the study's target (``tfvit.vis.gradcam``'s
    default layer, as pytorch-grad-cam), so that a reader sees both. Also written to TensorBoard under
    ``runs_dir/saliency``.

    Each model sees the images at its own resolution and normalisation (a pretrained run's: its checkpoint's);
    the figure shows them at the first run's.
    ``data_dir`` defaults to the runs' own (their configuration's). Returns the PNG path.
    """
    from tfvit import data as tfdata
    from tfvit import vis
    from tfvit.experiments.run import trained_model

    if not results:
        raise ValueError("saliency_figure needs at least one finished run.")
    dataset = results[0]["config"]["dataset"]
    data_dir = data_dir or results[0]["config"].get("data_dir") or None  # where the runs read their data
    info = tfdata.dataset_info(dataset)
    maps, row_labels, tags, shown, labels, shown_statistics = [], [], [], None, None, None
    for r in results:
        model = trained_model(r, runs_dir)
        preprocessing = r.get("preprocessing")  # a pretrained run's images are normalised as its checkpoint's
        images, labels = next(iter(tfdata.load(dataset, "test", num_images, image_size=model.image_size,
                                               channels=model.in_channels, limit=num_images, data_dir=data_dir,
                                               preprocessing=preprocessing)))
        images, labels = np.asarray(images), np.asarray(labels)
        predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
        if shown is None:
            shown = images
            shown_statistics = ((preprocessing["mean"], preprocessing["std"]) if preprocessing
                                else (info.mean, info.std))
        config = r["config"]
        start = "pretrained" if config["pretrained"] else "scratch"
        auto = vis.AUTO[vis.model_family(model)]
        run_maps = {f"explain ({auto})": vis.explain(model, images, class_index=labels),
                    f"{method} (study)": vis.gradcam(model, images, class_index=labels, method=method)}
        for kind, kind_maps in run_maps.items():
            maps.append(_at_size(kind_maps, shown))
            # Short lines: the label sits beside a row of images ~1.6 inches high.
            row_labels.append(f"{kind}\n{config['model'].split('_patch')[0]}\n{config['finetune']}, {start}\n"
                              f"{int(np.sum(predicted == labels))}/{len(labels)} right")
            tags.append(f"{kind}: {config['model']} {config['finetune']} {start}")
    titles = [info.class_name(int(i)) for i in labels]
    # The same overlays in TensorBoard, beside the runs' curves (tag saliency/<row>).
    mean, std = shown_statistics
    vis.write_tensorboard_images(os.path.join(runs_dir, "saliency"), "saliency", shown, dict(zip(tags, maps)),
                                 mean=mean, std=std)
    return vis.overlay_grid(shown, maps, path=path, titles=titles, row_labels=row_labels, mean=mean, std=std)


def _at_size(maps, images):
    """(B, h, w) maps resized to the (B, H, W, C) images' height and width."""
    from tfvit import vis

    return maps if maps.shape[1:] == images.shape[1:3] else vis.resize_maps(maps, images.shape[1:3])
