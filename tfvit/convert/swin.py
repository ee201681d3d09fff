"""Swin checkpoints (Hugging Face transformers and timm, both layouts) in timm's current names.

Where the patch merging lives differs: Hugging Face, the official Swin code and timm before 0.9 keep it at
the END of stage i (``layers.i.downsample``, i = 0 .. S-2); timm now, and tfvit, put it at the START of
stage i + 1 (``layers.{i+1}.downsample``). The index is moved by one for the former. Hugging Face keeps
separate query/key/value projections (fused here into ``qkv``); transformers 5 names them ``q_proj`` ...,
``o_proj``, ``mlp.fc1`` and ``relative_position_bias.relative_position_bias_table`` in memory, and those
names are read too. ``relative_position_index`` and ``attn_mask`` are buffers recomputed from the
configuration and are ignored.
"""

from tfvit.convert.renaming import IGNORE, rename, rule

_BLOCK = r"encoder\.layers\.(\d+)\.blocks\.(\d+)"
_ATTN = _BLOCK + r"\.attention\."


def _next_stage(template):
    """A replacement moving a downsample from the end of stage i to the start of stage i + 1."""
    return lambda match: template.format(int(match.group(1)) + 1, *match.groups()[1:])


HF_SWIN_RULES = [
    rule(r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    rule(r"embeddings\.norm\.(weight|bias)", r"patch_embed.norm.\1"),
    rule(_BLOCK + r"\.layernorm_before\.(weight|bias)", r"layers.\1.blocks.\2.norm1.\3"),
    rule(_BLOCK + r"\.layernorm_after\.(weight|bias)", r"layers.\1.blocks.\2.norm2.\3"),
    rule(_ATTN + r"(?:self\.query|q_proj)\.(weight|bias)", r"layers.\1.blocks.\2.attn.qkv.\3", 0),
    rule(_ATTN + r"(?:self\.key|k_proj)\.(weight|bias)", r"layers.\1.blocks.\2.attn.qkv.\3", 1),
    rule(_ATTN + r"(?:self\.value|v_proj)\.(weight|bias)", r"layers.\1.blocks.\2.attn.qkv.\3", 2),
    rule(_ATTN + r"(?:self|relative_position_bias)\.relative_position_bias_table",
         r"layers.\1.blocks.\2.attn.relative_position_bias_table"),
    rule(_ATTN + r"(?:self|relative_position_bias)\.relative_position_index", IGNORE),
    rule(_ATTN + r"(?:output\.dense|o_proj)\.(weight|bias)", r"layers.\1.blocks.\2.attn.proj.\3"),
    rule(_BLOCK + r"\.(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"layers.\1.blocks.\2.mlp.fc1.\3"),
    rule(_BLOCK + r"\.(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"layers.\1.blocks.\2.mlp.fc2.\3"),
    rule(r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)",
         _next_stage("layers.{}.downsample.{}.{}")),
    rule(r"layernorm\.(weight|bias)", r"norm.\1"),
    rule(r"classifier\.(weight|bias)", r"head.\1"),
]

_TIMM_BLOCK = r"layers\.(\d+)\.blocks\.(\d+)\."
_TIMM_SHARED = [
    rule(r"patch_embed\.(proj|norm)\.(weight|bias)", r"patch_embed.\1.\2"),
    rule(_TIMM_BLOCK + r"(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)",
         r"layers.\1.blocks.\2.\3.\4"),
    rule(_TIMM_BLOCK + r"attn\.relative_position_bias_table", r"layers.\1.blocks.\2.attn.relative_position_bias_table"),
    rule(_TIMM_BLOCK + r"attn\.relative_position_index", IGNORE),
    rule(_TIMM_BLOCK + r"attn_mask", IGNORE),
    rule(r"norm\.(weight|bias)", r"norm.\1"),
    rule(r"head(?:\.fc)?\.(weight|bias)", r"head.\1"),
]
TIMM_SWIN_RULES = _TIMM_SHARED + [
    rule(r"layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)", r"layers.\1.downsample.\2.\3"),
]
# The official checkpoints and timm < 0.9: merging at the end of the stage, stage 0 has one.
OFFICIAL_SWIN_RULES = _TIMM_SHARED + [
    rule(r"layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)", _next_stage("layers.{}.downsample.{}.{}")),
]


def is_official_layout(names):
    """Only the end-of-stage layout has a downsample in stage 0 (timm's checkpoint filter uses the same test)."""
    return "layers.0.downsample.reduction.weight" in names


def rename_hf_swin(state_dict):
    return rename(state_dict, HF_SWIN_RULES, prefix="swin.")


def rename_timm_swin(state_dict):
    rules = OFFICIAL_SWIN_RULES if is_official_layout(state_dict) else TIMM_SWIN_RULES
    return rename(state_dict, rules)
