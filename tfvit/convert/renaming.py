"""Rename a checkpoint's tensors to timm's layout, the one tfvit's weight names follow.

Every supported format is first rewritten into timm's names and torch layouts (``blocks.3.attn.qkv.weight``
of shape (3 * heads * head_dim, dim), ...); ``tfvit.convert.timm_layout`` then maps those to tfvit's
variables. A format is a list of rules ``(pattern, replacement, part)``: ``pattern`` is matched against the
whole name, ``replacement`` is a ``re`` template or a function of the match, and ``part`` 0/1/2 marks the
query/key/value pieces that are concatenated (in that order) into timm's fused ``qkv``.
"""

import dataclasses
import re

import numpy as np

IGNORE = "ignore"  # replacement for buffers recomputed from the configuration (index tables, masks)


@dataclasses.dataclass
class Renamed:
    """A checkpoint in timm's names.

    tensors: timm name -> array (torch layout); sources: timm name -> the checkpoint names it came from;
    ignored: buffers dropped; skipped: checkpoint name -> why it is not loaded; unmatched: names no rule knows.
    """

    tensors: dict
    sources: dict
    ignored: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)
    unmatched: list = dataclasses.field(default_factory=list)


def rule(pattern, replacement, part=None):
    return re.compile(pattern), replacement, part


def rename(state_dict, rules, skip=None, prefix=""):
    """Apply ``rules`` to every name of ``state_dict``; ``skip`` maps patterns to a reason for not loading.

    ``prefix`` (e.g. ``"vit."``, the backbone attribute of a task model) is removed before matching where a
    name has it; reports keep the checkpoint's own names.
    """
    skip = [(re.compile(p), why) for p, why in (skip or {}).items()]
    out = Renamed(tensors={}, sources={})
    pieces = {}
    for name, array in state_dict.items():
        key = name[len(prefix):] if prefix and name.startswith(prefix) else name
        why = next((why for pattern, why in skip if pattern.fullmatch(key)), None)
        if why is not None:
            out.skipped[name] = why
            continue
        for pattern, replacement, part in rules:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if replacement == IGNORE:
                out.ignored.append(name)
            else:
                target = replacement(match) if callable(replacement) else match.expand(replacement)
                if part is None:
                    if target in out.tensors:
                        first = out.sources[target][0]
                        raise ValueError(f"checkpoint names {first!r} and {name!r} both map to {target!r}.")
                    out.tensors[target] = np.asarray(array)
                    out.sources[target] = [name]
                else:
                    pieces.setdefault(target, {})[part] = (name, np.asarray(array))
            break
        else:
            out.unmatched.append(name)
    for target, parts in pieces.items():
        if sorted(parts) != [0, 1, 2]:
            have = [parts[p][0] for p in sorted(parts)]
            raise ValueError(
                f"the query/key/value projections for {target!r} are incomplete: the checkpoint has only {have}."
            )
        names, arrays = zip(*(parts[p] for p in (0, 1, 2)))
        # Concatenating the out-features of q, k, v gives timm's channel order (3, heads, head_dim): each
        # projection's own out-features are already ordered (heads, head_dim).
        out.tensors[target] = np.concatenate(arrays, axis=0)
        out.sources[target] = list(names)
    return out
