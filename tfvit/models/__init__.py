"""tfvit's model families, the registry of named configurations, and model statistics."""

from tfvit.models.pretrained import Preprocessing, PretrainedSource, pretrained_source
from tfvit.models.registry import list_models, model_config, register_model
from tfvit.models.resnet import BasicBlock, ResNet
from tfvit.models.stats import ModelStats, count_macs, stats
from tfvit.models.swin import SwinTransformer
from tfvit.models.vit import VisionTransformer

__all__ = [
    "BasicBlock", "ModelStats", "Preprocessing", "PretrainedSource", "ResNet", "SwinTransformer", "VisionTransformer",
    "count_macs", "list_models", "model_config", "pretrained_source", "register_model", "stats",
]
