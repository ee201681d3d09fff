"""``create_model(name, pretrained=...)``: a registry configuration built, then a checkpoint loaded into it.

It sits above both ``tfvit.models`` (the registry, a plain table of named configurations) and
``tfvit.convert`` (which reads the table to map timm architecture names), so neither imports the other
back.
"""

import os

from tfvit import _validation as check
from tfvit.convert.config import checkpoint_defaults
from tfvit.convert.hub import local_checkpoint
from tfvit.convert.loader import load_pretrained
from tfvit.convert.preprocessing import checkpoint_preprocessing
from tfvit.models.pretrained import pretrained_source
from tfvit.models.registry import model_config


def create_model(name, num_classes=None, image_size=None, in_channels=None, pretrained=None, **overrides):
    """Build a registry model; any constructor argument can be overridden by keyword.

    ``num_classes``, ``image_size`` and ``in_channels`` default to the configuration's own (1000,
    224 and 3 for the ImageNet ones).
    ``pretrained``: where the weights come from, loaded by ``tfvit.convert.load_pretrained``:
      * ``True``: the registry's default ImageNet checkpoint for ``name`` (``tfvit.models.pretrained_source``),
        from the Hugging Face hub;
      * ``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"``: any hub repository holding a transformers or
        timm ViT / Swin in safetensors (``tfvit.convert.hub``: downloaded once into the hub client's cache);
      * a local safetensors file or ``save_pretrained`` folder;
      * ``None`` / ``False``: random initialisation.
    Without ``num_classes`` the model takes the checkpoint's classifier width; with another one it gets a new
    randomly initialised head (a printed line says so). A different ``image_size`` resizes the position / bias
    tables. The LayerNorm epsilon comes from the checkpoint's config.json when it has one (Hugging Face ViT:
    1e-12). A model loaded from a checkpoint has a ``preprocessing`` attribute (``tfvit.models.Preprocessing``:
    mean, std, input size, interpolation; the registry's for ``True``, else what the checkpoint's files declare;
    None for a checkpoint that declares none and for random weights), which
    ``tfvit.data.load(..., preprocessing=model.preprocessing)`` applies.
    A keyword that the model's class does not take is a ``TypeError`` naming it and the closest
    argument names (Keras's ``Model`` would otherwise drop it and build the default model).
    """
    model_class, _, config = model_config(name)
    accepted = check.constructor_arguments(model_class)
    check.unknown_arguments(f"create_model({name!r})", overrides, accepted)
    reference, preprocessing = _checkpoint_reference(name, pretrained)
    checkpoint = None if reference is None else local_checkpoint(reference)
    if checkpoint is not None:  # what the class takes of them: a ResNet has no LayerNorm epsilon
        config.update({key: value for key, value in checkpoint_defaults(checkpoint).items() if key in accepted})
    for key, value in (("num_classes", num_classes), ("image_size", image_size), ("in_channels", in_channels)):
        if value is not None:
            config[key] = value
    config.update(overrides)
    config.setdefault("name", name)
    model = model_class(**config)
    model.preprocessing = None
    if checkpoint is not None:
        load_pretrained(model, checkpoint)
        model.preprocessing = preprocessing or checkpoint_preprocessing(checkpoint)
    return model


def _checkpoint_reference(name, pretrained):
    """(where the weights come from, the registry's preprocessing for them or None) for ``pretrained``."""
    if pretrained is None or pretrained is False:
        return None, None
    if pretrained is True:
        source = pretrained_source(name)
        return source.reference, source.preprocessing
    if isinstance(pretrained, (str, os.PathLike)):  # a path, or a hub reference (hf-hub:...)
        return pretrained, None
    raise TypeError(f"create_model({name!r}): pretrained must be True, False, None, 'hf-hub:ORG/NAME' or a checkpoint "
                    f"path; got {type(pretrained).__name__} {pretrained!r}.")
