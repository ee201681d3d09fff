"""The configuration of one study run, built in one place from the command line or by hand.

``RunConfig`` holds everything that determines a run's result; its ``name`` (readable settings plus a
digest of all of them) is the run's directory, so equal configurations share a resume state and a
result, and different ones never do. ``RunConfig.from_args`` maps the recipes' shared flags
(``tfvit.experiments.cli.add_run_arguments``) to its fields: the one path from a flag to the train step.
"""

import dataclasses
import hashlib
import json
import os

from tfvit.models.pretrained import HUB_PREFIX
from tfvit.training.device_defaults import resolve as resolve_device_defaults
from tfvit.training.distribution import STRATEGIES
from tfvit.training.micro_batches import micro_batch_size

# Fields that say where things are, how a run is labelled or what it keeps, not what it computes: left out
# of the run's identity, so that the same run read from another data folder resumes and is not trained again.
# The devices a run trains on are left out too: the updates are those of one device (tfvit.training.distribution),
# so a run started on one machine continues on several.
NOT_IDENTITY = ("group", "data_dir", "save_best", "strategy")
# Flag destinations whose field has another name.
FLAG_FIELDS = {"lr": "learning_rate"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. ``batch_size`` is the effective batch (one optimizer update);
    with ``accum`` > 1 it is processed in ``accum`` micro-batches of ``micro_batch`` examples.
    ``learning_rate`` is the peak rate actually used (any batch-size scaling already applied).
    ``precision="auto"`` and ``jit=None`` become this device's fastest measured settings
    (``tfvit.training.training_defaults``) when the configuration is made, so its name and saved copy
    say what ran."""

    dataset: str
    model: str
    batch_size: int
    accum: int = 1
    epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = None  # None: the optimizer's default (AdamW 0.05, SGD 1e-4)
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: str = ""
    dropout: float = 0.0
    drop_path: float = -1.0  # < 0: the registry configuration's own rate
    precision: str = "auto"
    jit: bool = None
    seed: int = 0
    limit_train: int = 0   # 0: the whole split
    limit_test: int = 0
    patience: int = 0      # 0: no early stopping
    group: str = ""        # what the run is compared as, e.g. "accumulation" / "baseline"
    image_size: int = 0    # 0: the registry configuration's own; else images are resized to this side
    pretrained: str = ""   # a checkpoint to start from: .safetensors file or folder, or hf-hub:ORG/NAME ("": random)
    finetune: str = "full"  # which weights train: "full", "partial" or "head" (tfvit.training.finetune)
    frozen_blocks: int = -1  # "partial": blocks / stages frozen after the stem (< 0: the default, half)
    layer_decay: float = 0.0  # layer-wise learning-rate decay factor (0: none)
    data_dir: str = ""     # folder of the datasets' own files ("": $TFVIT_DATA_DIR, then tfds; tfvit.data)
    save_best: bool = False  # also keep the best epoch's model (best.keras, with its optimizer state)
    strategy: str = "auto"  # the devices: "auto", "none", "mirrored" or "multi_worker" (tfvit.training.distribution)

    def __post_init__(self):
        if self.accum > self.batch_size:
            raise ValueError(f"accum={self.accum} is larger than the batch size {self.batch_size}: a micro-batch "
                             f"would be empty. Use --accum {self.batch_size} or fewer, or a larger --batch-size.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not one of {', '.join(STRATEGIES)}.")
        precision, jit = resolve_device_defaults(self.precision, self.jit)
        object.__setattr__(self, "precision", precision)
        object.__setattr__(self, "jit", jit)

    @classmethod
    def from_args(cls, args, **fields):
        """The configuration of parsed recipe flags: every flag named like a field (``--lr`` is
        ``learning_rate``) sets it; ``fields`` set the rest (e.g. ``model``) or override."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for dest, value in vars(args).items():
            field = FLAG_FIELDS.get(dest, dest)
            if field in names and value is not None:  # an unset flag (None) leaves the field's default
                values[field] = value
        values.update(fields)
        return cls(**values)

    @property
    def micro_batch(self):
        return micro_batch_size(self.batch_size, self.accum)

    def identity(self):
        """The settings that determine the result: all fields but ``NOT_IDENTITY``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTITY}

    @property
    def name(self):
        lr = f"{self.learning_rate:.2g}".replace("+", "")
        parts = [self.dataset, self.model, f"b{self.batch_size}", f"acc{self.accum}", f"lr{lr}", f"e{self.epochs}",
                 self.precision, f"s{self.seed}"]
        if self.jit:
            parts.append("xla")
        if self.augment:
            parts.append(self.augment.replace(",", "+"))
        if self.dropout:
            parts.append(f"do{self.dropout:g}")
        if self.drop_path >= 0:
            parts.append(f"dp{self.drop_path:g}")
        if self.limit_train:
            parts.append(f"n{self.limit_train}")
        if self.image_size:
            parts.append(f"px{self.image_size}")
        if self.pretrained:
            parts.append("pretrained")
        if self.finetune != "full":
            parts.append(self.finetune + (f"{self.frozen_blocks}" if self.frozen_blocks >= 0 else ""))
        if self.layer_decay:
            parts.append(f"ld{self.layer_decay:g}")
        # The readable parts leave some settings out; the digest of all of them keeps two configurations
        # from ever sharing a run directory (and so a resume state or a result).
        settings = json.dumps(self.identity(), sort_keys=True)
        parts.append(hashlib.sha1(settings.encode()).hexdigest()[:6])
        return "-".join(parts)


def start_label(pretrained):
    """How a run's weights start: "pretrained (<file>)", "pretrained (hf-hub:ORG/NAME)" or "from scratch"."""
    if not pretrained:
        return "from scratch"
    return f"pretrained ({pretrained if pretrained.startswith(HUB_PREFIX) else os.path.basename(pretrained)})"
