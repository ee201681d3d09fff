"""Global multi-head self-attention.

Vaswani et al. 2017, eq. 1:  Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V,
with the heads' projections fused in one ``qkv`` dense layer as in timm (output channels ordered
(3, heads, head_dim)), so pretrained ViT weights map one to one.
"""

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers.bias import Dense
from tfvit.layers.dropout import Dropout


def exact_attention(q, k, v, bias=None, scale=None, return_weights=False):
    """softmax(q k^T * scale + bias) v, softmax in float32.

    q: (..., Nq, d), k and v: (..., Nk, d), heads before tokens; leading axes (batch, windows,
    heads...) broadcast, and so does ``bias`` against the (..., Nq, Nk) logits. ``scale`` defaults
    to d^-1/2. Both products are batched matrix products (``keras.ops.matmul``; the transpose of k is
    folded into the product by TensorFlow's graph optimizer): on TensorFlow they are mostly a little
    faster forward and backward than the same products written as einsums, whose kernel transposes its
    operands itself (docs/performance.md measures it with
    ``python -m tools.attention_path_bench``). The logits are formed in the inputs' dtype (fast under
    mixed precision) but the softmax runs in float32, where a float16 exponential would overflow and a
    bfloat16 sum would lose the small terms.
    Returns the output in the dtype of v, and the float32 weights too when ``return_weights``.
    """
    head_dim = q.shape[-1]
    scale = head_dim ** -0.5 if scale is None else scale
    logits = ops.cast(ops.matmul(q * ops.cast(scale, q.dtype), ops.swapaxes(k, -1, -2)), "float32")
    if bias is not None:
        logits = logits + ops.cast(bias, "float32")
    weights = ops.softmax(logits, axis=-1)
    out = weighted_values(weights, v)
    return (out, weights) if return_weights else out


def weighted_values(weights, v):
    """The attention output: the (..., Nq, Nk) weights applied to the (..., Nk, d) values, in v's dtype."""
    return ops.matmul(ops.cast(weights, v.dtype), v)


class FusedSelfAttention(keras.layers.Layer):
    """The shell every tfvit self-attention layer shares: a fused ``qkv`` projection (output channels
    ordered (3, heads, key_dim) as in timm), an output projection ``proj`` and its dropout. Subclasses
    compute the attention between ``split_heads`` and ``merge_heads``.

    ``key_dim``: channels per head; None gives D // num_heads (num_heads must then divide D).
    """

    def __init__(self, num_heads, key_dim=None, qkv_bias=True, projection_dropout=0.0, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.num_heads = check.positive_int("num_heads", num_heads)
        self.key_dim = None if key_dim is None else check.positive_int("key_dim", key_dim)
        self.qkv_bias = bool(qkv_bias)
        self.projection_dropout = check.rate("projection_dropout", projection_dropout)
        self.proj_drop = Dropout(self.projection_dropout, dtype=self.dtype_policy, name="proj_drop")
        self.qkv = self.proj = None  # widths known at build

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expects tokens of shape (batch, tokens, dim), got {tuple(input_shape)}.")
        dim = input_shape[-1]
        self.head_dim = self.key_dim or check.heads_divide("dim", dim, self.num_heads)
        inner = self.num_heads * self.head_dim
        self.qkv = Dense(3 * inner, use_bias=self.qkv_bias, dtype=self.dtype_policy, name="qkv")
        self.proj = Dense(dim, dtype=self.dtype_policy, name="proj")
        self.qkv.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (inner,))
        self.built = True

    def qkv_tokens(self, x):
        """(B, N, D) -> the qkv projection as (B, N, 3, heads, head_dim)."""
        batch, tokens = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(self.qkv(x), (batch, tokens, 3, self.num_heads, self.head_dim))

    def split_heads(self, x):
        """(B, N, D) -> q, k, v, each (B, heads, N, head_dim), laid out for batched matrix products."""
        # One transpose of the whole qkv output to (3, B, heads, N, head_dim), then an unstack along
        # the leading axis: the backward pass is one stack and one transpose. (Indexing q, k, v out
        # of the reshape instead gives three strided slices, whose gradients are three zero-filled
        # tensors of the full qkv size added up.) ``python -m tools.attention_path_bench`` times the
        # paths; docs/performance.md has its numbers.
        return ops.unstack(ops.transpose(self.qkv_tokens(x), (2, 0, 3, 1, 4)), 3, axis=0)

    def merge_heads(self, out, training=None, heads_first=True):
        """(B, heads, N, head_dim) (or (B, N, heads, head_dim)) -> projected (B, N, D)."""
        if heads_first:
            out = ops.transpose(out, (0, 2, 1, 3))
        batch, tokens = ops.shape(out)[0], ops.shape(out)[1]
        out = ops.reshape(out, (batch, tokens, self.num_heads * self.head_dim))
        return self.proj_drop(self.proj(out), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, key_dim=self.key_dim, qkv_bias=self.qkv_bias,
                      projection_dropout=self.projection_dropout)
        return config


@keras.saving.register_keras_serializable(package="tfvit")
class MultiHeadSelfAttention(FusedSelfAttention):
    """Global self-attention over (B, N, D) tokens, every token attending to every token.

    Cost O(N^2 D). ``call(x, return_attention_scores=True)`` also returns the (B, heads, N, N)
    attention weights (float32), e.g. for attention rollout. ``use_fused_attention`` routes the
    plain case (no weights requested, no attention dropout) through ``keras.ops.dot_product_attention``;
    the default ``None`` does so on backends that have a fused kernel for it (JAX, torch). On
    TensorFlow that op is two einsums, slower than the explicit path's batched matrix products (see
    docs/performance.md, measured with ``python -m tools.attention_path_bench``), so the
    default there is the explicit path. Sub-layers follow timm: ``qkv`` and ``proj``.
    """

    def __init__(self, num_heads, qkv_bias=True, attention_dropout=0.0, projection_dropout=0.0,
                 use_fused_attention=None, **kwargs):
        super().__init__(num_heads, qkv_bias=qkv_bias, projection_dropout=projection_dropout, **kwargs)
        self.attention_dropout = check.rate("attention_dropout", attention_dropout)
        self.use_fused_attention = use_fused_attention
        self.attn_drop = Dropout(self.attention_dropout, dtype=self.dtype_policy, name="attn_drop")

    def call(self, x, return_attention_scores=False, training=None):
        use_fused = self.use_fused_attention
        if use_fused is None:
            use_fused = keras.backend.backend() != "tensorflow"
        dropping = bool(training) and self.attention_dropout > 0
        if use_fused and not return_attention_scores and not dropping:
            # keras.ops.dot_product_attention takes (B, N, heads, head_dim), the projection's own layout
            q, k, v = ops.unstack(self.qkv_tokens(x), 3, axis=2)
            out = ops.dot_product_attention(q, k, v, scale=self.head_dim ** -0.5)
            return self.merge_heads(out, training=training, heads_first=False)
        q, k, v = self.split_heads(x)  # each (B, heads, N, head_dim)
        out, weights = exact_attention(q, k, v, return_weights=True)
        if dropping:
            out = weighted_values(self.attn_drop(weights, training=training), v)
        out = self.merge_heads(out, training=training)
        return (out, weights) if return_attention_scores else out

    def get_config(self):
        config = super().get_config()
        config.update(attention_dropout=self.attention_dropout, use_fused_attention=self.use_fused_attention)
        return config
