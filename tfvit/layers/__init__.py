"""Keras layers of tfvit (keras.ops only, serializable under the package name "tfvit")."""

from tfvit.layers.attention import MultiHeadSelfAttention, exact_attention
from tfvit.layers.bias import Conv2D, Dense, bias_add
from tfvit.layers.blocks import TransformerBlock
from tfvit.layers.drop_path import DropPath
from tfvit.layers.dropout import Dropout
from tfvit.layers.embedding import ClassToken, PatchEmbedding, PositionEmbedding, resize_position_embedding
from tfvit.layers.gelu import gelu
from tfvit.layers.layer_norm import LayerNorm, layer_norm
from tfvit.layers.local import LocalAttention1D, NeighborhoodAttention2D, local_attention_1d, neighborhood_attention_2d
from tfvit.layers.mlp import MLP
from tfvit.layers.patch_merging import PatchMerging
from tfvit.layers.performer import PerformerAttention, favor_attention, random_projection
from tfvit.layers.pooling import TokenPooling
from tfvit.layers.swin_block import SwinBlock, SwinStage, effective_window
from tfvit.layers.window import (
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "ClassToken", "Conv2D", "Dense", "DropPath", "Dropout", "LayerNorm", "LocalAttention1D", "MLP",
    "MultiHeadSelfAttention", "NeighborhoodAttention2D", "PatchEmbedding", "PatchMerging", "PerformerAttention",
    "PositionEmbedding", "SwinBlock", "SwinStage", "TokenPooling", "TransformerBlock", "WindowAttention",
    "bias_add", "effective_window", "exact_attention", "favor_attention", "gelu", "layer_norm",
    "local_attention_1d", "neighborhood_attention_2d", "random_projection", "relative_position_index",
    "resize_position_embedding", "shifted_window_mask", "window_partition", "window_reverse",
]
