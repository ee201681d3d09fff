"""The token mixers a ViT can use, by name: ``VisionTransformer(attention=..., attention_kwargs=...)``.

- ``"global"``: MultiHeadSelfAttention, every token attends to every token (Vaswani et al. 2017).
- ``"performer_softmax"`` / ``"performer_relu"``: FAVOR+ linear attention with positive random features
  approximating the softmax kernel, or a ReLU kernel (Choromanski et al. 2021).
- ``"local2d"``: neighbourhood attention on the 2D patch grid, windows clamped at the borders
  (Hassani et al. 2023).
- ``"local1d"``: band attention on the flattened patch sequence.
The local kinds need a pure patch grid, so their models use mean pooling and no class token.
"""

from collections.abc import Mapping

from tfvit import _validation as check

ATTENTION_KINDS = ("global", "performer_softmax", "performer_relu", "local2d", "local1d")
LOCAL_KINDS = ("local2d", "local1d")
# The layer arguments that ``build_attention`` sets from the model's own arguments, by kind ("performer": both).
_SET_BY_MODEL = {
    "num_heads": "its num_heads argument", "qkv_bias": "its qkv_bias argument",
    "projection_dropout": "its dropout argument", "dtype": "its dtype argument", "name": "the block, which names it 'attn'",
}
_SET_BY_KIND = {
    "global": {"attention_dropout": "its attention_dropout argument"},
    "performer": {"kernel": "its attention argument: 'performer_softmax' or 'performer_relu'"},
    "local2d": {"grid_size": "its patch grid: image_size / patch_size"},
    "local1d": {},
}
_OPTIONS_EXAMPLE = {"global": "{'use_fused_attention': False}", "performer": "{'num_features': 64}",
                    "local2d": "{'kernel_size': 5}", "local1d": "{'window': 25}"}


def check_attention_kind(kind):
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {kind!r}.")
    return kind


def _layer_class(kind):
    from tfvit import layers

    return {"global": layers.MultiHeadSelfAttention, "performer": layers.PerformerAttention,
            "local2d": layers.NeighborhoodAttention2D, "local1d": layers.LocalAttention1D}[kind]


def check_attention_kwargs(kind, attention_kwargs, where="VisionTransformer"):
    """``attention_kwargs`` as a dict of options of ``kind``'s layer: a dict (None: none), naming only that
    layer's arguments (a misspelling is a TypeError with the closest ones) and none that the model sets."""
    family = "performer" if kind.startswith("performer") else kind
    if attention_kwargs is None:
        return {}
    if not isinstance(attention_kwargs, Mapping) or not all(isinstance(k, str) for k in attention_kwargs):
        raise ValueError(
            f"attention_kwargs must be a dict of keyword options for attention={kind!r} (e.g. "
            f"{_OPTIONS_EXAMPLE[family]}), got {attention_kwargs!r} ({type(attention_kwargs).__name__})."
        )
    reserved = {**_SET_BY_MODEL, **_SET_BY_KIND[family]}
    for key in attention_kwargs:
        if key in reserved:
            raise ValueError(f"attention_kwargs: {key!r} is set by {where} itself (from {reserved[key]}); remove it "
                             f"from attention_kwargs.")
    layer = _layer_class(family)
    accepted = check.constructor_arguments(layer) - set(reserved)
    check.unknown_arguments(f"{where} attention_kwargs (attention={kind!r}, {layer.__name__})", attention_kwargs,
                            accepted)
    return dict(attention_kwargs)


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
