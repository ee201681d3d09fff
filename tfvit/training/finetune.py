"""Fine-tuning a trained model: which layers learn, and at which rate.

``freeze_for_finetuning`` picks what trains:
    "full"     every weight;
    "partial"  all but the patch embedding / stem and the first K blocks (ViT) or stages (Swin, ResNet);
    "head"     only the classifier (linear probing; what ../shared/seeds/001 problem 2 called fine-tuning).
Frozen layers get ``trainable = False``; in Keras 3 that also keeps a frozen BatchNormalization in
inference mode (moving statistics used and left unchanged) even when the model runs with training=True.

``layer_decay_multipliers`` gives the layer-wise learning-rate decay that BEiT fine-tunes with (Bao et
al. 2022, "BEiT: BERT Pre-Training of Image Transformers"; introduced by ELECTRA, Clark et al. 2020):
with L blocks, layer id 0 is the patch embedding (with the class token and position
embedding; ResNet: the stem), id i + 1 is block i, id L + 1 the final norm and the head, and

    lr(layer id) = lr * decay ** (L + 1 - id),

so the head learns at the full rate and each block below it at ``decay`` times the rate above. Swin
and ResNet count blocks across stages (the global block index); Swin's patch merging, which timm's
current layout puts at the start of each stage, shares the id of that stage's first block. This is
timm's ``param_groups_layer_decay`` (timm/optim/_param_groups.py) with the layer ids of the models'
``group_matcher(coarse=False)`` (timm/models/vision_transformer.py, swin_transformer.py, resnet.py),
except the final ``norm`` of ViT and Swin: timm's matcher merges it into the last block's group
(decay ** 1), BEiT and this module put it with the head (rate 1).

Layers are recognised by timm's names, as tfvit's models use them: ``blocks.N`` (ViT), ``layers.N``
with ``blocks.M`` / ``downsample`` inside (Swin), ``layerS.B`` (ResNet); weighted layers before the
first block form the stem, those after the last block the top (norm, head); the classifier is the
top layer named ``head`` (or ``fc``).
"""

import dataclasses
import numbers
import re

import numpy as np

from tfvit.training.accumulation import GradientAccumulationModel

MODES = ("full", "partial", "head")

_VIT_BLOCK = re.compile(r"blocks\.(\d+)$")
_SWIN_STAGE = re.compile(r"layers\.(\d+)$")
_RESNET_BLOCK = re.compile(r"layer(\d+)\.(\d+)$")
_SWIN_PART = re.compile(r"(?:^|/)(?:blocks\.(\d+)|(downsample))/")
_CLASSIFIERS = ("head", "fc")


@dataclasses.dataclass(frozen=True)
class FinetuneSummary:
    """What ``freeze_for_finetuning`` left trainable.

    ``trainable_params + frozen_params`` is the number of weights that train in mode "full";
    BatchNorm moving statistics, never trained by gradients, are in neither.
    """

    mode: str
    frozen_blocks: int | None   # K of mode "partial" (blocks for ViT, stages for Swin / ResNet), else None
    unit: str                   # what K counts: "block" or "stage"
    trainable_params: int
    frozen_params: int
    frozen_layers: tuple        # names of the top-level layers set non-trainable


@dataclasses.dataclass
class _Layout:
    """The model's top-level weighted layers, grouped as the modes and the layer ids need them."""

    model: object
    family: str                 # "vit", "swin" or "resnet"
    stem: list
    units: list                 # freezing units: lists of layers (a ViT block, a Swin stage, a ResNet stage)
    unit: str
    top: list
    num_blocks: int             # L of the layer-decay formula


def _parse_layout(model):
    if isinstance(model, GradientAccumulationModel):
        model = model.model
    layers = [layer for layer in getattr(model, "layers", ()) if layer.weights]
    kinds = []
    for layer in layers:
        if _VIT_BLOCK.match(layer.name):
            kinds.append(("vit", int(_VIT_BLOCK.match(layer.name).group(1)), 0))
        elif _SWIN_STAGE.match(layer.name):
            kinds.append(("swin", int(_SWIN_STAGE.match(layer.name).group(1)), 0))
        elif _RESNET_BLOCK.match(layer.name):
            stage, block = _RESNET_BLOCK.match(layer.name).groups()
            kinds.append(("resnet", int(stage), int(block)))
        else:
            kinds.append(None)
    positions = [i for i, kind in enumerate(kinds) if kind is not None]
    families = {kinds[i][0] for i in positions}
    if not positions or len(families) != 1:
        names = [layer.name for layer in layers]
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} has no recognisable blocks: expected top-level layers named as "
            f"timm's ViT ('blocks.N'), Swin ('layers.N') or ResNet ('layerS.B'), got {names}."
        )
    first, last = positions[0], positions[-1]
    stray = [layers[i].name for i in range(first, last + 1) if kinds[i] is None]
    if stray:
        raise ValueError(
            f"model {model.name!r} has weighted layers {stray} between its blocks; their layer id is unknown."
        )
    family = families.pop()
    blocks = layers[first:last + 1]
    if family == "vit":
        units, unit, num_blocks = [[layer] for layer in blocks], "block", len(blocks)
    elif family == "swin":
        units, unit = [[layer] for layer in blocks], "stage"
        num_blocks = sum(_swin_depth(stage) for stage in blocks)
    else:
        stages = {}
        for layer, kind in zip(blocks, kinds[first:last + 1]):
            stages.setdefault(kind[1], []).append(layer)
        units, unit, num_blocks = [stages[s] for s in sorted(stages)], "stage", len(blocks)
    return _Layout(model, family, layers[:first], units, unit, layers[last + 1:], num_blocks)


def _swin_depth(stage):
    indices = {int(m.group(1)) for w in stage.weights for m in [_SWIN_PART.search(w.path)] if m and m.group(1)}
    return max(indices) + 1 if indices else 0


def _count(variables):
    return int(sum(int(np.prod(v.shape)) for v in variables))


def _check_frozen_blocks(value, layout):
    count = len(layout.units)
    if value is None:
        # ViT: the first half of the blocks; Swin and ResNet: every stage but the last. The lower
        # layers hold generic features that transfer; the upper ones adapt to the new task.
        return count // 2 if layout.unit == "block" else count - 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= count:
        raise ValueError(
            f"frozen_blocks must be an integer in [0, {count}] (model {layout.model.name!r} has {count} "
            f"{layout.unit}s), got {value!r}."
        )
    return int(value)


def freeze_for_finetuning(model, mode="full", frozen_blocks=None):
    """Set which layers of ``model`` train; returns a ``FinetuneSummary``.

    Args:
        model: a tfvit ViT, Swin or ResNet (or any functional model with timm's layer names), or a
            ``GradientAccumulationModel`` around one.
        mode: "full" (everything trains), "partial" (freeze the stem / patch embedding, class token and
            position embedding, and the first ``frozen_blocks`` blocks of a ViT or stages of a Swin /
            ResNet) or "head" (only the classifier trains: linear probing).
        frozen_blocks: K for "partial"; default: half of a ViT's blocks (rounded down), all but the last
            stage of a Swin or ResNet. Not allowed with the other modes.

    The mode sets the state of the whole model (earlier ``trainable`` flags are overwritten). Call it
    before ``compile``: Keras fixes the trainable variables when it builds the train function.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}.")
    layout = _parse_layout(model)
    if mode != "partial" and frozen_blocks is not None:
        raise ValueError(f"frozen_blocks only applies to mode='partial', got frozen_blocks={frozen_blocks!r} "
                         f"with mode={mode!r}.")
    inner = layout.model
    inner.trainable = True
    for layer in inner.layers:  # a functional model's setter does not reach its layers
        layer.trainable = True
    learnable = _count(inner.trainable_weights)
    k = None
    if mode == "full":
        frozen = []
    elif mode == "partial":
        k = _check_frozen_blocks(frozen_blocks, layout)
        frozen = layout.stem + [layer for unit in layout.units[:k] for layer in unit]
    else:
        heads = [layer for layer in layout.top if layer.name in _CLASSIFIERS]
        if not heads:
            raise ValueError(
                f"mode='head' trains only the classifier, but model {inner.name!r} has none (a top-level layer "
                f"named {' or '.join(map(repr, _CLASSIFIERS))}; num_classes=0?)."
            )
        frozen = [layer for layer in layout.stem + [x for u in layout.units for x in u] + layout.top
                  if layer is not heads[0]]
    for layer in frozen:
        layer.trainable = False
    trainable = _count(inner.trainable_weights)
    return FinetuneSummary(mode=mode, frozen_blocks=k, unit=layout.unit, trainable_params=trainable,
                           frozen_params=learnable - trainable, frozen_layers=tuple(layer.name for layer in frozen))


def layer_ids(model):
    """{variable path: layer id} of the model's trainable variables: 0 the stem, i + 1 block i
    (counted across stages), L + 1 the final norm and head (L blocks)."""
    layout = _parse_layout(model)
    ids = {}
    for layer in layout.stem:
        ids.update({v.path: 0 for v in layer.trainable_weights})
    first = 0  # global index of the current unit's first block
    for unit in layout.units:
        if layout.family == "vit":
            (block,) = unit
            ids.update({v.path: first + 1 for v in block.trainable_weights})
            first += 1
        elif layout.family == "resnet":
            for block in unit:
                index = first + int(_RESNET_BLOCK.match(block.name).group(2))
                ids.update({v.path: index + 1 for v in block.trainable_weights})
            first += len(unit)
        else:
            (stage,) = unit
            for v in stage.trainable_weights:
                part = _SWIN_PART.search(v.path)
                if part is None:
                    raise ValueError(f"Swin stage variable {v.path!r} is in neither a block nor the downsample.")
                # Patch merging opens the stage: it shares the id of the stage's first block.
                ids[v.path] = first + (int(part.group(1)) if part.group(1) else 0) + 1
            first += _swin_depth(stage)
    for layer in layout.top:
        ids.update({v.path: layout.num_blocks + 1 for v in layer.trainable_weights})
    return ids


def layer_decay_multipliers(model, decay):
    """{variable path: decay ** (L + 1 - layer id)} for the model's trainable variables.

    Pass it as ``lr_multipliers`` to ``tfvit.training.build_optimizer``; BEiT fine-tunes ViT-B with
    decay 0.65, ViT-L with 0.75. Call it after ``freeze_for_finetuning`` to list the trainable
    variables only (frozen ones never reach the optimizer, so their entries would do nothing).
    """
    ok = isinstance(decay, numbers.Real) and not isinstance(decay, bool) and 0.0 < float(decay) <= 1.0
    if not ok:
        raise ValueError(f"decay must be a float in (0, 1] (1: no decay), got {decay!r}.")
    top = _parse_layout(model).num_blocks + 1
    return {path: float(decay) ** (top - i) for path, i in layer_ids(model).items()}
