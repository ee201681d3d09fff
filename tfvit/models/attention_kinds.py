"""The token mixers a ViT can use, by name: ``VisionTransformer(attention=..., attention_kwargs=...)``.

- ``"global"``: MultiHeadSelfAttention, every token attends to every token (Vaswani et al. 2017).
- ``"performer_softmax"`` / ``"performer_relu"``: FAVOR+ linear attention with positive random features
  approximating the softmax kernel, or a ReLU kernel (Choromanski et al. 2021).
- ``"local2d"``: neighbourhood attention on the 2D patch grid, windows clamped at the borders
  (Hassani et al. 2023).
- ``"local1d"``: band attention on the flattened patch sequence.
The local kinds need a pure patch grid, so their models use mean pooling and no class token.
"""

ATTENTION_KINDS = ("global", "performer_softmax", "performer_relu", "local2d", "local1d")
LOCAL_KINDS = ("local2d", "local1d")


def check_attention_kind(kind):
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {kind!r}.")
    return kind


def build_attention(kind, num_heads, grid_size, qkv_bias=True, dropout=0.0, attention_dropout=0.0, dtype=None,
                    name="attn", **kwargs):
    """A fresh attention layer of ``kind`` for one block; ``kwargs`` are the layer's own options."""
    from tfvit import layers  # the layer modules import nothing from models: no cycle

    common = dict(qkv_bias=qkv_bias, projection_dropout=dropout, dtype=dtype, name=name)
    check_attention_kind(kind)
    if kind == "global":
        return layers.MultiHeadSelfAttention(num_heads, attention_dropout=attention_dropout, **common, **kwargs)
    if kind in ("performer_softmax", "performer_relu"):
        return layers.PerformerAttention(num_heads, kernel=kind.split("_")[1], **common, **kwargs)
    if kind == "local2d":
        return layers.NeighborhoodAttention2D(num_heads, grid_size=grid_size, **common, **kwargs)
    return layers.LocalAttention1D(num_heads, **common, **kwargs)
