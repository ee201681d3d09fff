"""``create_model(name, pretrained=...)``: a registry configuration built, then a checkpoint loaded into it.

It sits above both ``tfvit.models`` (the registry, a plain table of named configurations) and
``tfvit.convert`` (which reads the table to map timm architecture names), so neither imports the other
back.
"""

from tfvit import _validation as check
from tfvit.convert.config import checkpoint_defaults
from tfvit.convert.loader import load_pretrained
from tfvit.models.registry import model_config


def create_model(name, num_classes=None, image_size=None, in_channels=None, pretrained=None, **overrides):
    """Build a registry model; any constructor argument can be overridden by keyword.

    ``num_classes``, ``image_size`` and ``in_channels`` default to the configuration's own (1000,
    224 and 3 for the ImageNet ones).
    ``pretrained``: a Hugging Face / timm safetensors checkpoint (file or ``save_pretrained`` directory)
    loaded into the model by ``tfvit.convert.load_pretrained``. Without ``num_classes`` the model takes
    the checkpoint's classifier width; with another one it gets a new randomly initialised head (a
    printed line says so). A different ``image_size`` resizes the position / bias tables. The LayerNorm
    epsilon comes from the checkpoint's config.json when it has one (Hugging Face ViT: 1e-12).
    A keyword that the model's class does not take is a ``TypeError`` naming it and the closest
    argument names (Keras's ``Model`` would otherwise drop it and build the default model).
    """
    model_class, _, config = model_config(name)
    accepted = check.constructor_arguments(model_class)
    check.unknown_arguments(f"create_model({name!r})", overrides, accepted)
    if pretrained is not None:  # what the class takes of them: a ResNet has no LayerNorm epsilon
        config.update({key: value for key, value in checkpoint_defaults(pretrained).items() if key in accepted})
    for key, value in (("num_classes", num_classes), ("image_size", image_size), ("in_channels", in_channels)):
        if value is not None:
            config[key] = value
    config.update(overrides)
    config.setdefault("name", name)
    model = model_class(**config)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model
