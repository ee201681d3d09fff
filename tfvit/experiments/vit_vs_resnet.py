"""The runs of the ViT-versus-ResNet study (../shared/seeds/001).

Problem 1: ViTs of four sizes (depth L, heads H, width D: 2L-2H-128, 4L-4H-256, 6L-8H-384, 8L-8H-512)
against ResNet-18, all trained from scratch on CIFAR-10: parameters, multiply-accumulates, test accuracy
and time per epoch.

Problem 2: Swin-Tiny and Swin-Small on CIFAR-100, fine-tuned from ImageNet weights versus trained from
scratch. The study's log shows that both of its arms loaded the ImageNet checkpoint ("Some weights of
SwinForImageClassification were not initialized from the model checkpoint" is printed before its
"from scratch" runs too), and its "fine-tuned" runs took half the time per epoch of the others, as a
frozen backbone does. So its "fine-tuned" column is a linear probe of the pretrained features and its
"from scratch" column is full fine-tuning of the pretrained model, which is why "from scratch" won by
18 points in 5 epochs. Here the three are separate, named runs: ``head`` (linear probe, pretrained),
``full`` (full fine-tuning, pretrained) and ``scratch`` (random initialisation, all weights trained).
"""

import dataclasses

from tfvit.experiments.config import start_label
from tfvit.experiments.report import markdown

# Problem 1 rows: study name -> registry model.
PROBLEM1 = {
    "ResNet-18": "resnet18_cifar",
    "ViT (2L-2H-128)": "vit_cifar_patch4_32_2l2h128",
    "ViT (4L-4H-256)": "vit_cifar_patch4_32_4l4h256",
    "ViT (6L-8H-384)": "vit_cifar_patch4_32_6l8h384",
    "ViT (8L-8H-512)": "vit_cifar_patch4_32_8l8h512",
}
# The study's problem 1 table: params (M), test accuracy (%), "FLOPs" (M), s/epoch (its hardware).
PUBLISHED1 = {
    "ResNet-18": (11.2, 77.3, 558, 21),
    "ViT (2L-2H-128)": (3.5, 72.1, 330, 19),
    "ViT (4L-4H-256)": (10.8, 76.0, 910, 32),
    "ViT (6L-8H-384)": (27.2, 77.1, 2340, 58),
    "ViT (8L-8H-512)": (44.1, 77.4, 4200, 84),
}
PROBLEM2_MODELS = {"Swin-Tiny": "swin_tiny_patch4_window7_224", "Swin-Small": "swin_small_patch4_window7_224"}
# The study's problem 2 table, as it labelled it: s/epoch and test accuracy (%) on CIFAR-100 after 5 epochs.
PUBLISHED2 = {
    ("Swin-Tiny", "Fine-tuned"): (1133.54, 66.69),
    ("Swin-Small", "Fine-tuned"): (1412.57, 69.97),
    ("Swin-Tiny", "From Scratch"): (2217.78, 85.35),
    ("Swin-Small", "From Scratch"): (2821.67, 87.52),
}
# Our arm -> the study's column that (by its log) ran the same thing.
STUDY_COLUMN = {"head": "Fine-tuned", "full": "From Scratch", "scratch": None}
ARMS = ("head", "full", "scratch")


def plan_problem1(base, rows=None):
    """One RunConfig per problem-1 row (all of them by default)."""
    rows = list(PROBLEM1) if rows is None else list(rows)
    unknown = [r for r in rows if r not in PROBLEM1]
    if unknown:
        raise ValueError(f"unknown problem-1 models {unknown}; choose from {list(PROBLEM1)}.")
    return [dataclasses.replace(base, model=PROBLEM1[r], group=r) for r in rows]


def plan_problem2(base, models=None, arms=ARMS, checkpoints=None):
    """RunConfigs for problem 2. ``checkpoints`` maps "Swin-Tiny" / "Swin-Small" (or the registry name) to a
    checkpoint (a .safetensors file or folder, or hf-hub:ORG/NAME); the pretrained arms (``head``, ``full``) of a model without one are left out and
    returned in ``skipped`` with the reason, since they cannot be run honestly from random weights."""
    models = list(PROBLEM2_MODELS) if models is None else list(models)
    unknown = [m for m in models if m not in PROBLEM2_MODELS]
    if unknown:
        raise ValueError(f"unknown problem-2 models {unknown}; choose from {list(PROBLEM2_MODELS)}.")
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ValueError(f"problem-2 arms must be among {list(ARMS)}, got {bad}.")
    checkpoints = dict(checkpoints or {})
    runs, skipped = [], []
    for label in models:
        registry_name = PROBLEM2_MODELS[label]
        checkpoint = checkpoints.get(label) or checkpoints.get(registry_name) or ""
        for arm in arms:
            if arm == "scratch":
                runs.append(dataclasses.replace(base, model=registry_name, finetune="full", pretrained="",
                                                group=f"{label} scratch"))
            elif checkpoint:
                runs.append(dataclasses.replace(base, model=registry_name, finetune=arm, pretrained=checkpoint,
                                                group=f"{label} {arm}"))
            else:
                skipped.append(f"{label} {arm}: needs ImageNet weights: --pretrained, or --checkpoint "
                               f"{label}=<path>.safetensors or {label}=hf-hub:ORG/NAME")
    return runs, skipped


def problem1_table(results):
    """The study's problem-1 layout, ours beside its published figures."""
    header = ["model", "params (M)", "MACs (M)", "test acc (%)", "time/epoch (s, steady)",
              "study: params (M), acc (%), FLOPs (M), s/epoch"]
    body = []
    for r in results:
        paper = PUBLISHED1.get(r["group"])
        macs = f"{r['macs'] / 1e6:.0f}" if r["macs"] is not None else "n/a"  # None: counted on TensorFlow only
        body.append([r["group"], f"{r['params'] / 1e6:.2f}", macs, f"{100 * r['test_accuracy']:.2f}",
                     f"{r['time_per_epoch']:.1f}", ", ".join(map(str, paper)) if paper else ""])
    return markdown(header, body)


def problem2_table(results):
    """Problem 2: each arm with what it starts from and trains, beside the study's column that ran the same."""
    header = ["model", "arm", "start", "trainable (M)", "time/epoch (s, steady)", "test acc (%)",
              "study (its label): s/epoch, acc (%)"]
    body = []
    for r in results:
        label, arm = r["group"].rsplit(" ", 1)
        column = STUDY_COLUMN[arm]
        paper = PUBLISHED2.get((label, column))
        body.append([label, arm, start_label(r["config"]["pretrained"]), f"{r['trainable_params'] / 1e6:.2f}",
                     f"{r['time_per_epoch']:.1f}", f"{100 * r['test_accuracy']:.2f}",
                     f"({column}) {paper[0]:.0f}, {paper[1]:.2f}" if paper else "(no such run)"])
    return markdown(header, body)
