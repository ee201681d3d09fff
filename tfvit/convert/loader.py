"""Load a Hugging Face / timm safetensors checkpoint into a tfvit ViT or Swin.

Every tfvit parameter must receive exactly one checkpoint tensor and every checkpoint tensor must be
used, or nothing is assigned and the error lists what is missing and what is left over: a model built
with the wrong configuration never loads half its weights. Three differences are resolved instead:
  * position table on another patch grid (other image size): resampled bicubically, class token kept
    (``tfvit.layers.embedding.resize_position_embedding``; Dosovitskiy et al. 2021, section 3.2);
  * relative-position bias table for another window (other window, or a stage grid smaller than the
    window): resampled bicubically over the offset grid (``tfvit.convert.resample``);
  * classifier of another width (or none): tfvit's freshly initialised ``head`` is kept.
"""

import dataclasses

import numpy as np
from keras import ops

from tfvit.convert.config import SHAPE_BLIND, infer_config, pair, read_config_json, source_grid
from tfvit.convert.formats import detect_format
from tfvit.convert.hub import local_checkpoint
from tfvit.convert.resample import resize_relative_position_bias_table
from tfvit.convert.safetensors_file import read_safetensors
from tfvit.convert.timm_layout import tfvit_path, to_keras_layout
from tfvit.layers.embedding import resize_position_embedding
from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer

# Leaf names of the parameters a checkpoint provides. Other variables (Performer's random features
# and redraw counter) are state of tfvit's own attention variants and keep their values.
PARAMETER_LEAVES = ("kernel", "bias", "gamma", "beta", "cls_token", "pos_embed", "relative_position_bias_table")
HEAD = ("head/kernel", "head/bias")
SHOWN = 8  # names listed per problem in an error message

# Checkpoint names from variants that tfvit does not implement, and what they are.
_VARIANT_HINTS = {
    "fc_norm": "timm's fc_norm (LayerNorm after mean pooling) is not supported",
    "reg_token": "register tokens are not supported",
    "dist_token": "DeiT distillation tokens are not supported",
    ".ls1.": "LayerScale is not supported",
    "q_norm": "query/key normalisation is not supported",
    "absolute_pos_embed": "Swin's absolute position embedding (ape=True) is not supported",
    "position_embeddings": "an absolute position embedding without a class token is not supported",
    "mask_token": "a masked-image-modeling mask token has no use in a classifier",
    "norm_pre": "a LayerNorm before the blocks (norm_pre, CLIP) is not supported",
}


@dataclasses.dataclass
class LoadReport:
    """What ``load_pretrained`` did.

    loaded: tfvit variables assigned (resized ones included); resized: "path: (from) -> (to)";
    skipped: checkpoint names not loaded, with the reason; initialised: tfvit variables left as
    initialised (a replaced head, attention-variant state); missing / unused: only with strict=False.
    """

    source: str
    format: str
    loaded: list = dataclasses.field(default_factory=list)
    resized: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)
    initialised: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [(f"{self.format} checkpoint {self.source}: {len(self.loaded)} variables loaded, "
                  f"{len(self.resized)} resized, {len(self.skipped)} checkpoint tensors skipped")]
        lines += [f"  resized {r}" for r in self.resized]
        lines += [f"  kept initialised: {', '.join(self.initialised)}"] if self.initialised else []
        lines += [f"  missing (strict=False): {_first(self.missing)}"] if self.missing else []
        lines += [f"  unused (strict=False): {_first(self.unused)}"] if self.unused else []
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _first(names, count=SHOWN):
    names = list(names)
    more = f" ... and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def _family_of(model):
    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, SwinTransformer):
        return "swin"
    raise ValueError(
        f"model must be a tfvit VisionTransformer or SwinTransformer, got {type(model).__name__}."
    )


def _check_architecture(model, path, report):
    """Compare the model with the checkpoint's config.json where a mismatch would not show in any shape."""
    if read_config_json(path) is None:
        return
    try:
        _, expected = infer_config(path)
    except ValueError as error:
        report.notes.append(f"config.json not used: {error}")
        return
    config = model.get_config()
    for key in SHAPE_BLIND:
        have, want = config.get(key), expected.get(key)
        if key == "patch_size" and want is not None:  # 16 and (16, 16) are the same patch
            have, want = pair(have), pair(want)
        if want is not None and tuple(np.atleast_1d(have)) != tuple(np.atleast_1d(want)):
            raise ValueError(
                f"the checkpoint was saved from a model with {key}={want} (its config.json), but the model has "
                f"{key}={have}: the weights would load but compute something else. Build the model with {key}={want}."
            )
    eps = expected.get("norm_epsilon")
    if eps is not None and not np.isclose(config["norm_epsilon"], eps, rtol=1e-3, atol=0):
        report.notes.append(
            f"the checkpoint's LayerNorm epsilon is {eps:g}, the model's {config['norm_epsilon']:g}; build the model "
            f"with norm_epsilon={eps:g} to reproduce the checkpoint's outputs exactly."
        )


def _hint(names):
    hints = sorted({why for name in names for key, why in _VARIANT_HINTS.items() if key in name})
    return f" ({'; '.join(hints)})" if hints else ""


def load_pretrained(model, path, strict=True, verbose=True):
    """Assign a safetensors checkpoint's weights to a tfvit ``VisionTransformer`` / ``SwinTransformer``.

    ``path``: a ``.safetensors`` file, a ``save_pretrained`` directory or a hub repository
    ``hf-hub:ORG/NAME[@REVISION]`` (``tfvit.convert.hub``: fetched into the hub client's cache), from Hugging
    Face transformers (``ViTForImageClassification``, ``ViTModel``, ``SwinForImageClassification``,
    ``SwinModel``) or timm (ViT, Swin in both layouts). ``strict=False`` loads what matches and reports the
    rest instead of raising. ``verbose`` prints a line when the classifier is replaced or a table resized.
    Returns a ``LoadReport``. Nothing is assigned when an error is raised; a checkpoint whose tensors to be
    loaded hold NaN or infinite values is refused, naming them.
    """
    family = _family_of(model)
    source = str(path)
    path = local_checkpoint(path)
    state = read_safetensors(path)
    fmt = detect_format(state)
    if fmt.family != family:
        raise ValueError(
            f"{path!r} is a {fmt.description} checkpoint, but the model is a {type(model).__name__}; build a "
            f"{'SwinTransformer' if fmt.family == 'swin' else 'VisionTransformer'} for it."
        )
    report = LoadReport(source=source, format=fmt.description)
    _check_architecture(model, path, report)
    renamed = fmt.rename(state)
    report.skipped.update(renamed.skipped)
    report.skipped.update({name: "buffer recomputed from the configuration" for name in renamed.ignored})

    # Checkpoint tensors under tfvit's paths, in Keras layouts.
    targets, sources, unused = {}, {}, list(renamed.unmatched)
    for name, array in renamed.tensors.items():
        path_ = tfvit_path(name)
        targets[path_] = to_keras_layout(path_, array)
        sources[path_] = renamed.sources[name]

    variables = {v.path: v for v in model.weights}
    _replace_head_if_needed(targets, sources, variables, report)

    values, mismatched = {}, []
    order = {p: i for i, p in enumerate(variables)}  # report in the model's order
    for path_, array in sorted(targets.items(), key=lambda item: order.get(item[0], len(order))):
        variable = variables.get(path_)
        if variable is None:
            unused.extend(sources[path_])
            continue
        want = tuple(variable.shape)
        if tuple(array.shape) != want:
            resized = _resize(model, path_, array, want, path)
            if resized is None:
                shape = tuple(array.shape)
                mismatched.append(f"{path_}: checkpoint {shape} (from {sources[path_][0]}) vs model {want}")
                continue
            report.resized.append(f"{path_}: {tuple(array.shape)} -> {want}")
            array = resized
        values[path_] = array

    if mismatched:
        raise ValueError(
            f"{len(mismatched)} checkpoint tensors do not fit the model's shapes; the model's configuration differs "
            f"from the checkpoint's (width, depth, heads, patch or MLP size): " + "; ".join(mismatched[:SHOWN])
        )
    unassigned = [p for p in variables if p not in values and p not in report.initialised]
    missing = [p for p in unassigned if p.rsplit("/", 1)[-1] in PARAMETER_LEAVES]
    report.initialised += [p for p in unassigned if p.rsplit("/", 1)[-1] not in PARAMETER_LEAVES]
    if strict and (missing or unused):
        problems = []
        if missing:
            problems.append(f"{len(missing)} model variables have no checkpoint tensor: {_first(missing)}")
        if unused:
            problems.append(f"{len(unused)} checkpoint tensors have no model variable: {_first(unused)}{_hint(unused)}")
        raise ValueError(
            f"{path!r} ({fmt.description}) does not match the {type(model).__name__} '{model.name}': "
            + "; ".join(problems) + ". Build the model with the checkpoint's configuration (depth, widths, heads, "
            "qkv_bias, class token), or pass strict=False to load the matching part."
        )
    report.missing, report.unused = missing, unused
    _refuse_non_finite(path, {name: state[name] for path_ in values for name in sources[path_]})

    for path_, array in values.items():
        variable = variables[path_]
        variable.assign(ops.cast(np.asarray(array, dtype=np.float32), variable.dtype))
        report.loaded.append(path_)
    if verbose:
        for line in report.resized:
            print(f"tfvit.convert: resized {line}")
        for note in report.notes:
            print(f"tfvit.convert: note: {note}")
    return report


def _refuse_non_finite(path, tensors):
    """Raise ValueError naming the checkpoint tensors (of ``tensors``, those to be loaded) that hold NaN or
    infinite values: loaded, they would make every output NaN."""
    bad = []
    for name, array in tensors.items():
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.floating):  # read_safetensors has widened bfloat16 to float32
            continue
        finite = np.isfinite(array)
        if finite.all():
            continue
        nans = int(np.count_nonzero(np.isnan(array)))
        infs = array.size - int(np.count_nonzero(finite)) - nans
        counts = " and ".join(f"{n} {what}" for n, what in ((nans, "NaN"), (infs, "infinite")) if n)
        bad.append(f"{name} ({counts} of {array.size} values)")
    if bad:
        raise ValueError(
            f"{path!r} holds NaN or infinite values in {len(bad)} of the tensors it would load: {_first(bad)}. "
            f"Loaded, they would make every output NaN: the file is damaged, or was saved from a training run that "
            f"diverged. Nothing was assigned; use another checkpoint (or one saved before the run diverged)."
        )


def _replace_head_if_needed(targets, sources, variables, report):
    """Keep the model's new head when the checkpoint's classifier has another width or is absent."""
    model_classes = variables[HEAD[0]].shape[-1] if HEAD[0] in variables else 0
    checkpoint_classes = targets[HEAD[0]].shape[-1] if HEAD[0] in targets else 0
    if model_classes == checkpoint_classes:
        return
    for path_ in HEAD:
        for name in sources.pop(path_, []):
            report.skipped[name] = f"classifier for {checkpoint_classes} classes; the model has {model_classes}"
        targets.pop(path_, None)
        if path_ in variables:
            report.initialised.append(path_)
    if model_classes:
        had = f"has {checkpoint_classes} classes" if checkpoint_classes else "is absent"
        report.notes.append(
            f"new randomly initialised head for {model_classes} classes (the checkpoint's classifier {had})"
        )


def _resize(model, path_, array, want, checkpoint):
    """The checkpoint tensor resized to the model's shape, or None when no resizing rule applies."""
    if path_ == "pos_embed/pos_embed" and array.ndim == 3 and array.shape[2] == want[2]:
        layer = model.get_layer("pos_embed")
        prefix = layer.num_prefix_tokens
        try:
            grid = source_grid(checkpoint, array.shape[1], prefix)
        except ValueError:
            return None  # e.g. a class token position the model does not have: reported as a mismatch
        return resize_position_embedding(array, grid, layer.grid_size, prefix, layer.interpolation)
    if path_.endswith("/relative_position_bias_table") and array.ndim == 2 and array.shape[1] == want[1]:
        side = round(want[0] ** 0.5)
        return resize_relative_position_bias_table(array, (side + 1) // 2)
    return None
