"""Swin Transformer.

Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows":
a 4x4 patch embedding, then stages of (shifted-)window attention blocks separated by patch merging
(grid /2, width x2), LayerNorm, global average pooling and a linear head. Layer names follow timm's
current layout (``patch_embed``, ``layers.i.downsample``, ``layers.i.blocks.j.attn``, ``norm``,
``head``). Works at any resolution: see ``tfvit.layers.swin_block``.
"""

import keras
import numpy as np

from tfvit import _validation as check
from tfvit.layers import keyed_random
from tfvit.layers import Dropout, LayerNorm, PatchEmbedding, SwinStage, TokenPooling, effective_window
from tfvit.models.base import ImageClassifier


def stage_resolutions(image_size, patch_size, num_stages):
    """Token grid of each stage: image / patch, then ceil-halved by each patch merging."""
    grid = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
    sizes = [grid]
    for _ in range(num_stages - 1):
        grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        sizes.append(grid)
    return sizes


@keras.saving.register_keras_serializable(package="tfvit")
class SwinTransformer(ImageClassifier):
    """Swin image classifier on (B, H, W, C) images; returns float32 logits (B, num_classes).

    ``depths`` and ``num_heads`` give one entry per stage; stage i has width embed_dim * 2^i.
    ``drop_path_rate`` is the stochastic-depth rate of the last block (linear from 0). ``seed`` seeds
    the seeds of the dropout and stochastic-depth layers (``tfvit.layers.keyed_random.layer_seeds_from``);
    None draws one from numpy's global generator. It is kept in the config, so a reloaded model draws the
    same masks.
    """

    def __init__(self, image_size=224, patch_size=4, in_channels=3, num_classes=1000, embed_dim=96,
                 depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4.0, qkv_bias=True,
                 dropout=0.0, attention_dropout=0.0, drop_path_rate=0.1, norm_epsilon=1e-5,
                 classifier_activation=None, seed=None, dtype=None, name="swin_transformer", **kwargs):
        check.known_arguments(self, kwargs)  # Keras's functional Model would drop a misspelled option silently
        image_size = check.as_pair("image_size", image_size)
        patch_size = check.as_pair("patch_size", patch_size)
        in_channels = check.positive_int("in_channels", in_channels)
        check.check_patch_grid(patch_size, image_size, where=f"SwinTransformer(image_size={image_size})")
        embed_dim = check.positive_int("embed_dim", embed_dim)
        window_size = check.positive_int("window_size", window_size)
        depths, num_heads = tuple(depths), tuple(num_heads)
        if not depths or len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} need one entry per stage each.")
        widths = [embed_dim * 2 ** i for i in range(len(depths))]
        for i, (width, heads) in enumerate(zip(widths, num_heads)):
            check.heads_divide(f"stage {i} width", width, heads)
        check.rate("drop_path_rate", drop_path_rate)
        num_classes = check.num_classes(num_classes)
        seed = keyed_random.new_layer_seed(seed)
        config = dict(
            image_size=image_size, patch_size=patch_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=window_size,
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, dropout=dropout, attention_dropout=attention_dropout,
            drop_path_rate=drop_path_rate, norm_epsilon=norm_epsilon,
            classifier_activation=classifier_activation, seed=seed, dtype=dtype,
        )
        rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()

        with keyed_random.layer_seeds_from(seed):  # the layers' seeds, in creation order
            images = keras.Input((*image_size, in_channels), name="images")
            x = PatchEmbedding(
                patch_size, embed_dim, use_norm=True, norm_epsilon=norm_epsilon, flatten=False, dtype=dtype,
                name="patch_embed",
            )(images)
            x = Dropout(dropout, dtype=dtype, name="pos_drop")(x)
            for i, (depth, heads, width) in enumerate(zip(depths, num_heads, widths)):
                first = sum(depths[:i])
                x = SwinStage(
                    depth, heads, width, window_size=window_size, downsample=i > 0, mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias, dropout=dropout, attention_dropout=attention_dropout,
                    drop_path=rates[first:first + depth], norm_epsilon=norm_epsilon, dtype=dtype, name=f"layers.{i}",
                )(x)
            x = LayerNorm(epsilon=norm_epsilon, dtype=dtype, name="norm")(x)
            x = TokenPooling("mean", num_prefix_tokens=0, dtype=dtype, name="pool")(x)
            if num_classes:
                x = Dropout(dropout, dtype=dtype, name="head_drop")(x)
                x = keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="head")(x)
        self._finish(config, images, x, name, **kwargs)
        self.stage_resolutions = stage_resolutions(image_size, patch_size, len(depths))
        self.stage_windows = [effective_window(r, window_size, window_size // 2) for r in self.stage_resolutions]
