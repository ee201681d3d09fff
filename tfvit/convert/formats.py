"""Recognise which library and architecture wrote a checkpoint, from its tensor names alone."""

import dataclasses
import re

from tfvit.convert.swin import is_official_layout, rename_hf_swin, rename_timm_swin
from tfvit.convert.vit import rename_hf_vit, rename_timm_vit


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
    family: str  # "vit" or "swin": the tfvit model class it loads into
    library: str  # "transformers" or "timm"
    description: str
    rename: object  # state dict -> tfvit.convert.renaming.Renamed (timm's names)


HF_VIT = CheckpointFormat("vit", "transformers", "Hugging Face transformers ViT", rename_hf_vit)
HF_SWIN = CheckpointFormat("swin", "transformers", "Hugging Face transformers Swin", rename_hf_swin)
TIMM_VIT = CheckpointFormat("vit", "timm", "timm ViT", rename_timm_vit)
TIMM_SWIN = CheckpointFormat("swin", "timm", "timm Swin", rename_timm_swin)
OFFICIAL_SWIN = CheckpointFormat(
    "swin", "timm", "Swin, official / timm < 0.9 layout (patch merging at the end of each stage)", rename_timm_swin
)

# Names that only one format has; the first format with a matching name wins.
_MARKERS = [
    (HF_SWIN, r"(swin\.)?encoder\.layers\.\d+\.blocks\.\d+\.attention\..*"),
    (HF_VIT, r"(vit\.)?(embeddings\.cls_token|(encoder\.layer|layers)\.\d+\.attention\.(attention\.query|q_proj)\..*)"),
    (TIMM_SWIN, r"layers\.\d+\.blocks\.\d+\.attn\..*"),
    (TIMM_VIT, r"blocks\.\d+\.attn\.qkv\..*"),
]
FORMAT_NAMES = {
    HF_VIT: "vit.encoder.layer.N.attention.attention.query.weight, vit.embeddings.cls_token",
    HF_SWIN: "swin.encoder.layers.i.blocks.j.attention.self.query.weight",
    TIMM_VIT: "blocks.N.attn.qkv.weight, cls_token, pos_embed",
    TIMM_SWIN: "layers.i.blocks.j.attn.qkv.weight",
}


def detect_format(names):
    """The CheckpointFormat whose characteristic names appear in ``names``; ValueError if none does."""
    names = list(names)
    for fmt, pattern in _MARKERS:
        pattern = re.compile(pattern)
        if any(pattern.fullmatch(name) for name in names):
            if fmt is TIMM_SWIN and is_official_layout(names):
                return OFFICIAL_SWIN
            return fmt
    expected = "; ".join(f"{fmt.description}: {example}" for fmt, example in FORMAT_NAMES.items())
    raise ValueError(
        f"unrecognised checkpoint: none of its {len(names)} tensor names (first: {sorted(names)[:6]}) is a ViT "
        f"or Swin name from Hugging Face transformers or timm. Expected names like {expected}."
    )
