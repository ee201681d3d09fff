"""Vision Transformer (ViT).

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale":
    z_0 = [x_class; patches E] + E_pos;  z_l = TransformerBlock(z_{l-1}), l = 1..L;
    y = head(LN(z_L)_0)   (class token; or the mean of the patch tokens).
Layer names follow timm (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv``,
``norm``, ``head``) so pretrained checkpoints map by name.
"""

import keras
import numpy as np

from tfvit import _validation as check
from tfvit.layers import keyed_random
from tfvit.layers import (
    ClassToken, Dropout, LayerNorm, PatchEmbedding, PositionEmbedding, TokenPooling, TransformerBlock,
)
from tfvit.models.attention_kinds import LOCAL_KINDS, build_attention, check_attention_kind, check_attention_kwargs
from tfvit.models.base import ImageClassifier


@keras.saving.register_keras_serializable(package="tfvit")
class VisionTransformer(ImageClassifier):
    """ViT image classifier on (B, H, W, C) images; returns float32 logits (B, num_classes).

    ``num_classes=0`` drops the head and returns the pooled features. ``drop_path_rate`` is the
    stochastic-depth rate of the last block, increasing linearly from 0 at the first. ``attention``
    picks the token mixer of every block ("global", "performer_softmax", "performer_relu",
    "local2d", "local1d"; see ``tfvit.models.attention_kinds``), ``attention_kwargs`` its options
    (e.g. ``{"num_features": 64}``, ``{"kernel_size": 5}``). ``seed`` seeds the seeds of the dropout,
    stochastic-depth and Performer layers (``tfvit.layers.keyed_random.layer_seeds_from``); None draws
    one from numpy's global generator. It is kept in the config, so a reloaded model draws the same masks.
    """

    def __init__(self, image_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, class_token=True, pooling="token", dropout=0.0,
                 attention_dropout=0.0, drop_path_rate=0.0, norm_epsilon=1e-6, classifier_activation=None,
                 attention="global", attention_kwargs=None, seed=None, dtype=None, name="vision_transformer",
                 **kwargs):
        check.known_arguments(self, kwargs)  # Keras's functional Model would drop a misspelled option silently
        image_size = check.as_pair("image_size", image_size)
        patch_size = check.as_pair("patch_size", patch_size)
        in_channels = check.positive_int("in_channels", in_channels)
        check.check_patch_grid(patch_size, image_size, where=f"VisionTransformer(image_size={image_size})")
        depth = check.positive_int("depth", depth)
        embed_dim = check.positive_int("embed_dim", embed_dim)
        check.heads_divide("embed_dim", embed_dim, num_heads)
        num_heads = int(num_heads)
        check.rate("drop_path_rate", drop_path_rate)
        num_classes = check.num_classes(num_classes)
        check_attention_kind(attention)
        attention_kwargs = check_attention_kwargs(attention, attention_kwargs, where="VisionTransformer")
        seed = keyed_random.new_layer_seed(seed)
        if attention in LOCAL_KINDS and class_token:
            raise ValueError(
                f"attention={attention!r} works on the patch grid alone: build it with class_token=False "
                f"and pooling='mean'."
            )
        config = dict(
            image_size=image_size, patch_size=patch_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            class_token=class_token, pooling=pooling, dropout=dropout, attention_dropout=attention_dropout,
            drop_path_rate=drop_path_rate, norm_epsilon=norm_epsilon,
            classifier_activation=classifier_activation, attention=attention, attention_kwargs=attention_kwargs,
            seed=seed, dtype=dtype,
        )
        grid = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
        prefix = 1 if class_token else 0
        pooling_layer = TokenPooling(pooling, num_prefix_tokens=prefix, dtype=dtype, name="pool")

        with keyed_random.layer_seeds_from(seed):  # the layers' seeds, in creation order
            images = keras.Input((*image_size, in_channels), name="images")
            x = PatchEmbedding(patch_size, embed_dim, dtype=dtype, name="patch_embed")(images)
            if class_token:
                x = ClassToken(dtype=dtype, name="cls_token")(x)
            x = PositionEmbedding(grid, num_prefix_tokens=prefix, dtype=dtype, name="pos_embed")(x)
            x = Dropout(dropout, dtype=dtype, name="pos_drop")(x)
            for i, rate in enumerate(np.linspace(0.0, drop_path_rate, depth)):
                mixer = build_attention(
                    attention, num_heads, grid, qkv_bias=qkv_bias, dropout=dropout,
                    attention_dropout=attention_dropout, dtype=dtype, **attention_kwargs,
                )
                x = TransformerBlock(
                    attention=mixer, mlp_ratio=mlp_ratio, dropout=dropout, drop_path=float(rate),
                    norm_epsilon=norm_epsilon, dtype=dtype, name=f"blocks.{i}",
                )(x)
            x = LayerNorm(epsilon=norm_epsilon, dtype=dtype, name="norm")(x)
            x = pooling_layer(x)
            if num_classes:
                x = Dropout(dropout, dtype=dtype, name="head_drop")(x)
                # float32 logits under mixed precision: the loss and softmax need the range.
                x = keras.layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="head")(x)
        self._finish(config, images, x, name, **kwargs)
        self.grid_size = grid
