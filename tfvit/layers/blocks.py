"""The pre-norm transformer encoder block of ViT, and the base it shares with Swin's block.

Dosovitskiy et al. 2021, eqs. 2-3:
    x = x + DropPath(Attention(LN(x)))
    x = x + DropPath(MLP(LN(x)))
The attention is a parameter: any layer mapping (B, N, D) -> (B, N, D) plugs in (global, Performer,
local...), so attention variants need no block of their own. Swin's block (Liu et al. 2021, eq. 3)
is the same two residual branches around a windowed attention, so both build their norms, drop
paths and MLP, and run the MLP branch, through ``PreNormBlock``.
"""

import keras

from tfvit import _validation as check
from tfvit.layers.attention import MultiHeadSelfAttention
from tfvit.layers.drop_path import DropPath
from tfvit.layers.layer_norm import LayerNorm
from tfvit.layers.mlp import MLP


class PreNormBlock(keras.layers.Layer):
    """Base of the pre-norm blocks (``TransformerBlock``, ``SwinBlock``): what their two branches share.

    ``init_branches`` validates and stores the shared hyperparameters and creates ``norm1``, ``attn``,
    ``drop_path1``, ``drop_path2`` and ``norm2`` in this order: the order in which the layers' seeds are
    drawn and their weights listed, which seeded runs and optimizer checkpoints (variables by position)
    depend on. ``build_mlp`` makes ``mlp`` once the token width is known; ``mlp_residual`` is the second
    branch, x + DropPath(MLP(LN(x))). Not exported: a block subclasses it, a model uses the blocks.
    """

    def __init__(self, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)

    def init_branches(self, mlp_ratio, qkv_bias, dropout, attention_dropout, drop_path, norm_epsilon,
                      make_attention=None):
        """``make_attention()``, called once the hyperparameters are set, returns the ``attn`` layer;
        None leaves ``attn`` to ``build`` (Swin: the window depends on the grid)."""
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}.")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout = check.rate("dropout", dropout)
        self.attention_dropout = check.rate("attention_dropout", attention_dropout)
        self.drop_path_rate = check.rate("drop_path", drop_path)
        self.norm_epsilon = float(norm_epsilon)
        policy = self.dtype_policy
        self.norm1 = LayerNorm(epsilon=self.norm_epsilon, dtype=policy, name="norm1")
        self.attn = make_attention() if make_attention is not None else None
        # One per branch: a shared layer would draw the same mask for both (its key is the layer seed).
        self.drop_path1 = DropPath(self.drop_path_rate, dtype=policy, name="drop_path1")
        self.drop_path2 = DropPath(self.drop_path_rate, dtype=policy, name="drop_path2")
        self.norm2 = LayerNorm(epsilon=self.norm_epsilon, dtype=policy, name="norm2")
        self.mlp = None  # width known at build

    def build_mlp(self, dim):
        self.mlp = MLP(int(dim * self.mlp_ratio), dropout=self.dropout, dtype=self.dtype_policy, name="mlp")

    def mlp_residual(self, x, training=None):
        return x + self.drop_path2(self.mlp(self.norm2(x), training=training), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias, dropout=self.dropout,
            attention_dropout=self.attention_dropout, drop_path=self.drop_path_rate, norm_epsilon=self.norm_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="tfvit")
class TransformerBlock(PreNormBlock):
    """Pre-norm block: ``norm1``, ``attn``, ``drop_path1``, ``norm2``, ``mlp``, ``drop_path2`` (timm names).

    ``call_from_norm1(x, normed)`` runs the block from the output of ``norm1``: it returns
    ``call(x)`` when ``normed`` is ``norm1(x)``, and ``call`` is implemented through it. Any other
    tensor in place of ``normed`` enters the attention only, the residual still adds ``x``; Grad-CAM
    (``tfvit.vis``) uses this to differentiate with respect to norm1's output.

    Args:
        num_heads: heads of the default global attention (ignored when ``attention`` is given).
        attention: a Keras layer used as the token mixer instead of MultiHeadSelfAttention.
        mlp_ratio: hidden width of the MLP as a multiple of the token width.
        drop_path: stochastic-depth rate of each residual branch (drawn independently per branch).
    """

    def __init__(self, num_heads=None, attention=None, mlp_ratio=4.0, qkv_bias=True, dropout=0.0,
                 attention_dropout=0.0, drop_path=0.0, norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if attention is None and num_heads is None:
            raise ValueError("TransformerBlock needs num_heads (for global attention) or an attention layer.")
        if isinstance(attention, dict):
            attention = keras.saving.deserialize_keras_object(attention)
        if attention is not None and not isinstance(attention, keras.layers.Layer):
            raise ValueError(f"attention must be a keras Layer, got {type(attention).__name__}.")
        self.num_heads = num_heads

        def make_attention():
            return attention if attention is not None else MultiHeadSelfAttention(
                num_heads, qkv_bias=self.qkv_bias, attention_dropout=self.attention_dropout,
                projection_dropout=self.dropout, dtype=self.dtype_policy, name="attn",
            )

        self.init_branches(mlp_ratio, qkv_bias, dropout, attention_dropout, drop_path, norm_epsilon, make_attention)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expects tokens of shape (batch, tokens, dim), got {tuple(input_shape)}.")
        self.build_mlp(input_shape[-1])
        for layer in (self.norm1, self.attn, self.norm2, self.mlp):
            if not layer.built:  # a given attention layer may come built (deserialized, or shared)
                layer.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        return self.call_from_norm1(x, self.norm1(x), training=training)

    def call_from_norm1(self, x, normed, training=None):
        """The block's output for input ``x`` (B, N, D) given ``normed`` = ``norm1(x)``:
        h = x + DropPath(attn(normed)), then h + DropPath(MLP(norm2(h)))."""
        x = x + self.drop_path1(self.attn(normed, training=training), training=training)
        return self.mlp_residual(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, attention=keras.saving.serialize_keras_object(self.attn))
        return config
