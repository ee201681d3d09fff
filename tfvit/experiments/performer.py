"""The runs of the Performer study (../shared/seeds/003): a small ViT with Performer-ReLU and
Performer-softmax attention (m = 16, 32, 64, 128 random features), global attention, Swin (local
windows), and 2D / 1D local attention, on MNIST, Fashion-MNIST or CIFAR-10; reported as its
Tables 1 and 2.
"""

import dataclasses

from tfvit.experiments.report import markdown

PERFORMERS = [f"performer_{kernel}_{m}" for kernel in ("relu", "softmax") for m in (16, 32, 64, 128)]
TABLE_MODELS = PERFORMERS + ["global", "swin"]            # the ten rows of the study's tables
DEFAULT_MODELS = TABLE_MODELS + ["local2d", "local1d"]
BASES = {"cifar10": ("vit_cifar_patch4_32", "swin_cifar_patch2_window4_32"),
         "mnist": ("vit_mnist_patch4_28", "swin_mnist_patch2_window4_28"),
         "fashion_mnist": ("vit_mnist_patch4_28", "swin_mnist_patch2_window4_28")}
# The study's own figures (Table 1: CIFAR-10, Table 2: MNIST): train acc, val acc, val loss, epochs,
# s/epoch, ms/step (its hardware, its full datasets).
PUBLISHED = {
    "cifar10": {
        "performer_relu_16": (0.8115, 0.7072, 0.9279, 60, 20, 104), "performer_relu_32": (0.7826, 0.7005, 0.9184, 60, 20, 106),
        "performer_relu_64": (0.8017, 0.6856, 0.9999, 60, 19, 102), "performer_relu_128": (0.8060, 0.7306, 0.8236, 60, 19, 102),
        "performer_softmax_16": (0.8462, 0.7748, 0.6970, 60, 14, 74), "performer_softmax_32": (0.8442, 0.7834, 0.7103, 60, 14, 74),
        "performer_softmax_64": (0.8471, 0.7699, 0.7226, 60, 14, 74), "performer_softmax_128": (0.8426, 0.7714, 0.7012, 60, 14, 74),
        "global": (0.9568, 0.7266, 0.9910, 60, 24, 137), "swin": (0.8078, 0.7242, 1.1881, 50, 6, 17),
    },
    "mnist": {
        "performer_relu_16": (0.9860, 0.9908, 0.0288, 60, 7, 30), "performer_relu_32": (0.9865, 0.9904, 0.0283, 60, 7, 30),
        "performer_relu_64": (0.9864, 0.9896, 0.0341, 60, 7, 30), "performer_relu_128": (0.9872, 0.9932, 0.0251, 60, 7, 29),
        "performer_softmax_16": (0.9864, 0.9919, 0.0291, 60, 7, 30), "performer_softmax_32": (0.9853, 0.9924, 0.0260, 60, 8, 33),
        "performer_softmax_64": (0.9856, 0.9930, 0.0241, 60, 7, 29), "performer_softmax_128": (0.9854, 0.9916, 0.0285, 60, 8, 32),
        "global": (0.9872, 0.9898, 0.0278, 60, 8, 32), "swin": (0.3008, 0.3160, 2.0161, 50, 3, 8),
    },
}


def registry_name(study_model, dataset):
    """The registry model behind a study name (``performer_relu_16``, ``global``, ``swin``, ``local2d`` ...)."""
    if dataset not in BASES:
        raise ValueError(f"dataset must be one of {sorted(BASES)}, got {dataset!r}.")
    if study_model not in DEFAULT_MODELS:
        raise ValueError(f"unknown study model {study_model!r}; choose from {', '.join(DEFAULT_MODELS)}.")
    vit, swin = BASES[dataset]
    return {"global": vit, "swin": swin}.get(study_model, f"{vit}_{study_model}")


def plan(base, models, swin_epochs=None):
    """One RunConfig per study model; ``base`` holds the shared settings (dataset, epochs, ...)."""
    runs = []
    for study_model in models:
        epochs = swin_epochs if study_model == "swin" and swin_epochs else base.epochs
        runs.append(dataclasses.replace(base, model=registry_name(study_model, base.dataset), epochs=epochs,
                                        group=study_model))
    return runs


def study_table(results):
    """The study's table layout, with its published figures beside ours where it has them."""
    published = PUBLISHED.get(results[0]["config"]["dataset"], {}) if results else {}
    header = ["model", "train acc", "val acc", "val loss", "epochs", "time/epoch (steady)", "time/step (steady)",
              "study: train / val acc, val loss, s/epoch, ms/step"]
    body = []
    for r in results:
        paper = published.get(r["group"])
        body.append([r["group"], f"{r['train_accuracy']:.4f}", f"{r['test_accuracy']:.4f}", f"{r['test_loss']:.4f}",
                     r["epochs_run"], f"{r['time_per_epoch']:.1f}s", f"{1000 * r['time_per_step']:.0f}ms",
                     f"{paper[0]:.4f} / {paper[1]:.4f}, {paper[2]:.4f}, {paper[4]}s, {paper[5]}ms" if paper else ""])
    return markdown(header, body)
