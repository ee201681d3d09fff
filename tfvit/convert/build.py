"""Build the tfvit model a checkpoint describes and load it: ``from_pretrained(path, **overrides)``."""

from tfvit.convert.config import infer_config
from tfvit.convert.hub import local_checkpoint
from tfvit.convert.loader import load_pretrained
from tfvit.convert.preprocessing import checkpoint_preprocessing
from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer


def from_pretrained(path, strict=True, verbose=True, **overrides):
    """A tfvit ViT / Swin built from the ``config.json`` beside ``path`` and loaded from the checkpoint.

    ``path``: a safetensors file, a ``save_pretrained`` folder, or a hub repository
    ``hf-hub:ORG/NAME[@REVISION]`` (``tfvit.convert.hub``). ``overrides`` replace constructor arguments, e.g.
    ``num_classes=10`` (new head), ``image_size=384`` (resized position table), ``dropout=0.1``. Returns the
    model; its ``load_report`` attribute holds
    ``load_pretrained``'s report, its ``preprocessing`` what the checkpoint's files declare (or None).
    """
    path = local_checkpoint(path)
    family, kwargs = infer_config(path)
    kwargs.update(overrides)
    model = (SwinTransformer if family == "swin" else VisionTransformer)(**kwargs)
    model.load_report = load_pretrained(model, path, strict=strict, verbose=verbose)
    model.preprocessing = checkpoint_preprocessing(path)
    return model
