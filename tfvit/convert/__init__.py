"""Pretrained ViT and Swin weights from Hugging Face transformers and timm safetensors files.

    from tfvit.convert import load_pretrained, from_pretrained
    model = tfvit.create_model("vit_base_patch16_224", pretrained="vit-base/model.safetensors", num_classes=10)
    report = load_pretrained(model, "vit-base/")          # into a model built by hand
    model = from_pretrained("vit-base/", image_size=384)   # architecture from the config.json beside it

Only safetensors files are read (no torch needed); pickle checkpoints are refused with the lines that
convert them. See ``tfvit.convert.loader`` for what is checked and what is resized.
"""

from tfvit.convert.build import from_pretrained
from tfvit.convert.config import infer_config
from tfvit.convert.formats import CheckpointFormat, detect_format
from tfvit.convert.loader import LoadReport, load_pretrained
from tfvit.convert.resample import resize_relative_position_bias_table
from tfvit.convert.safetensors_file import read_safetensors, read_safetensors_shapes

__all__ = [
    "CheckpointFormat", "LoadReport", "detect_format", "from_pretrained", "infer_config", "load_pretrained",
    "read_safetensors", "read_safetensors_shapes", "resize_relative_position_bias_table",
]
