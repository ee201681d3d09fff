"""ViT checkpoints (Hugging Face transformers and timm) in timm's names.

Hugging Face ``ViTForImageClassification`` files (``vit.`` prefix, ``classifier``) and bare ``ViTModel``
files (no prefix, optional ``pooler``) keep separate query/key/value projections, fused here into timm's
``qkv``. transformers 5 writes its files in these names but names the modules ``layers.N.attention.q_proj``,
``o_proj``, ``mlp.fc1`` in memory; a state dict saved from memory in those names is read too.
timm files need no renaming; their variants without a tfvit counterpart (``fc_norm``, register tokens,
LayerScale, distillation tokens) are reported as unused names.
"""

from tfvit.convert.renaming import rename, rule

_LAYER = r"(?:encoder\.layer|layers)\.(\d+)"  # transformers' file names, then its in-memory names

HF_VIT_RULES = [
    rule(r"embeddings\.cls_token", "cls_token"),
    rule(r"embeddings\.position_embeddings", "pos_embed"),
    rule(r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    rule(_LAYER + r"\.attention\.(?:attention\.query|q_proj)\.(weight|bias)", r"blocks.\1.attn.qkv.\2", 0),
    rule(_LAYER + r"\.attention\.(?:attention\.key|k_proj)\.(weight|bias)", r"blocks.\1.attn.qkv.\2", 1),
    rule(_LAYER + r"\.attention\.(?:attention\.value|v_proj)\.(weight|bias)", r"blocks.\1.attn.qkv.\2", 2),
    rule(_LAYER + r"\.attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    rule(_LAYER + r"\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    rule(_LAYER + r"\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    rule(_LAYER + r"\.(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    rule(_LAYER + r"\.(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    rule(r"layernorm\.(weight|bias)", r"norm.\1"),
    rule(r"classifier\.(weight|bias)", r"head.\1"),
]
HF_VIT_SKIP = {
    r"pooler\.dense\.(weight|bias)": "ViTModel's tanh pooler: tfvit's features are the normalised class token, "
                                     "which is what ViTForImageClassification classifies",
}

TIMM_VIT_RULES = [
    rule(r"(cls_token|pos_embed)", r"\1"),
    rule(r"patch_embed\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    rule(r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    rule(r"norm\.(weight|bias)", r"norm.\1"),
    rule(r"head\.(weight|bias)", r"head.\1"),
]


def rename_hf_vit(state_dict):
    return rename(state_dict, HF_VIT_RULES, skip=HF_VIT_SKIP, prefix="vit.")


def rename_timm_vit(state_dict):
    return rename(state_dict, TIMM_VIT_RULES)
