"""Checkpoints on the Hugging Face hub: ``hf-hub:ORG/NAME[@REVISION]`` made a local folder.

    folder = hub_checkpoint("hf-hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    model = tfvit.create_model("vit_tiny_patch16_224", pretrained=True)  # the same repository, by registry name

Downloads go through ``huggingface_hub.snapshot_download`` and so through the hub client's own cache
(``$HF_HOME/hub``, or ``$HF_HUB_CACHE``), progress bars, token (``HF_TOKEN`` or ``hf auth login``) and offline
switch (``HF_HUB_OFFLINE=1``): a file downloaded once is never downloaded again, and what timm or transformers
cached serves tfvit too. Only what a checkpoint needs is fetched: ``model.safetensors`` (or a sharded one with
its index), ``config.json`` and ``preprocessor_config.json``, never the pickles beside them. A repository with
no safetensors weights is refused, naming the pickle files it has instead, and nothing of them is downloaded.

Errors say what to do: offline (or with the hub out of reach) and not cached, the message names the repository,
the cache folder and the command that fills it, and comes without a network attempt when ``HF_HUB_OFFLINE=1``.
"""

import dataclasses
import os
import re

from tfvit.convert.safetensors_file import CONVERT_HINT, PICKLE_SUFFIXES, SHARD_INDEX_NAME, WEIGHTS_NAME
from tfvit.errors import UserError
from tfvit.models.pretrained import HUB_PREFIX

SIDE_FILES = ("config.json", "preprocessor_config.json")
# The weights as transformers and timm save them: one file, or shards named model-00001-of-00002.safetensors.
WEIGHT_PATTERNS = (WEIGHTS_NAME, SHARD_INDEX_NAME, "model-*-of-*.safetensors")
# The options of `hf download` that fill the cache with the same files.
INCLUDE = '--include "model*.safetensors*" --include "*config.json"'
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+")


class CheckpointUnavailable(UserError):
    """A hub checkpoint that cannot be had here: not cached while offline or with the hub out of reach, or a
    repository or revision the hub does not show. The message names the repository, the cache folder and what
    to do."""


@dataclasses.dataclass(frozen=True)
class HubReference:
    """A hub repository and, optionally, a revision (branch, tag, commit or ``refs/pr/N``)."""

    repo_id: str
    revision: str = None

    def __str__(self):
        return HUB_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def is_hub_reference(value):
    """Whether ``value`` is a string naming a hub checkpoint (``hf-hub:...``)."""
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def parse_hub_reference(text):
    """``HubReference`` of ``hf-hub:ORG/NAME`` or ``hf-hub:ORG/NAME@REVISION``; ValueError saying the form."""
    body = text[len(HUB_PREFIX):] if is_hub_reference(text) else str(text)
    repo_id, at, revision = body.partition("@")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or (at and not revision.strip()):
        raise ValueError(
            f"{text!r} is not a hub checkpoint: expected {HUB_PREFIX}ORG/NAME or {HUB_PREFIX}ORG/NAME@REVISION (a "
            f"branch, tag or commit), e.g. {HUB_PREFIX}timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k."
        )
    return HubReference(repo_id, revision.strip() or None)


def local_checkpoint(path):
    """The local path of a checkpoint: a hub reference fetched (``hub_checkpoint``), a path as it is."""
    if isinstance(path, HubReference) or is_hub_reference(path):
        return hub_checkpoint(path)
    return os.fspath(path)


def _client():
    try:
        import huggingface_hub
    except ImportError:
        raise UserError("hub checkpoints (hf-hub:...) are downloaded with huggingface_hub, which is not installed: "
                        "pip install huggingface_hub") from None
    return huggingface_hub


def hub_checkpoint(reference):
    """The local folder (a snapshot in the hub client's cache) holding the checkpoint ``reference``
    (``hf-hub:ORG/NAME[@REVISION]`` or a ``HubReference``), downloading what is not cached yet; its
    ``model.safetensors`` when the repository also has a shard index.

    Raises ``CheckpointUnavailable`` when it is not cached and cannot be downloaded (offline, hub out of reach,
    unknown, private or gated repository, unknown revision), and ValueError when the repository holds no
    safetensors weights (pickles are never downloaded)."""
    ref = reference if isinstance(reference, HubReference) else parse_hub_reference(reference)
    hub = _client()
    from huggingface_hub import constants, errors

    try:
        folder = hub.snapshot_download(ref.repo_id, revision=ref.revision,
                                       allow_patterns=[*WEIGHT_PATTERNS, *SIDE_FILES])
    except errors.GatedRepoError:
        raise CheckpointUnavailable(
            f"{ref}: the repository is gated: accept its terms on https://huggingface.co/{ref.repo_id} and log in "
            f"(hf auth login, or set HF_TOKEN) with the account that accepted them.") from None
    except errors.RepositoryNotFoundError:
        raise CheckpointUnavailable(
            f"{ref}: the hub has no repository {ref.repo_id!r} that this user can see. Check the name (model pages "
            f"are https://huggingface.co/ORG/NAME); a private one needs hf auth login or HF_TOKEN.") from None
    except errors.RevisionNotFoundError:
        raise CheckpointUnavailable(
            f"{ref}: the repository {ref.repo_id!r} has no revision {ref.revision!r} (a branch, tag, commit or "
            f"refs/pr/N).") from None
    except errors.LocalEntryNotFoundError as error:  # not cached, and offline or the hub out of reach
        raise CheckpointUnavailable(not_cached_message(ref, error, constants)) from None
    except errors.HfHubHTTPError as error:
        raise CheckpointUnavailable(f"{ref}: the hub refused the download: {error}") from None
    present = _files(folder)
    if WEIGHTS_NAME in present and SHARD_INDEX_NAME in present:
        # A local folder with both is refused (resolve_checkpoint), but a revision's files are the publisher's and
        # a cache is no place to delete one: read the single file, as transformers' from_pretrained does.
        return os.path.join(folder, WEIGHTS_NAME)
    if WEIGHTS_NAME in present or SHARD_INDEX_NAME in present:
        return folder
    listing, cached_copy = present, True
    if not constants.HF_HUB_OFFLINE:
        try:  # the repository's own files, to name its pickles; the cached copy's when the hub is out of reach
            listing, cached_copy = set(hub.list_repo_files(ref.repo_id, revision=ref.revision)), False
        except Exception:  # noqa: BLE001 (only a message depends on it; the client's network errors vary by version)
            pass
    raise ValueError(_no_safetensors_message(ref, listing, folder, cached_copy))


def _files(folder):
    """Paths of the files under ``folder``, relative to it, with '/' separators."""
    found = set()
    for root, _, names in os.walk(folder):
        for name in names:
            found.add(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return found


def _cache_folder(ref, constants):
    return os.path.join(constants.HF_HUB_CACHE, "models--" + ref.repo_id.replace("/", "--"))


def _fill_command(ref):
    revision = f" --revision {ref.revision}" if ref.revision else ""
    return f"hf download {ref.repo_id}{revision} {INCLUDE}"


def not_cached_message(ref, error, constants):
    """Why ``ref`` cannot be had (offline, or the hub out of reach: ``error``), where the cache is and how to
    fill it."""
    if constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE=1 forbids downloading it"
    else:
        cause = error.__cause__ or error
        first_line = str(cause).splitlines()[0] if str(cause) else ""
        why = f"the hub could not be reached ({type(cause).__name__}: {first_line})"
    return (
        f"{ref}: not in the Hugging Face cache, and {why}. The cache is {constants.HF_HUB_CACHE} (from HF_HOME / "
        f"HF_HUB_CACHE); this checkpoint goes into {_cache_folder(ref, constants)}. To fill it, run on a machine "
        f"that reaches the hub, with the same HF_HOME: {_fill_command(ref)} (pip install huggingface_hub gives "
        f"the hf command), then copy that models--... folder into {constants.HF_HUB_CACHE} here. Or give the "
        f"folder of a downloaded copy (model.safetensors and config.json) instead of {ref}."
    )


def _no_safetensors_message(ref, listing, folder, cached_copy):
    pickles = sorted(f for f in listing if f.endswith(PICKLE_SUFFIXES))
    others = sorted(f for f in listing if f.endswith(".safetensors"))
    where = f"the cached copy of {ref} ({folder})" if cached_copy else f"the repository {ref}"
    if others:
        return (f"{where} holds safetensors files but none named {WEIGHTS_NAME} (or {SHARD_INDEX_NAME}): "
                f"{others[:5]}. Download the one that holds the model and give its path.")
    if not pickles:
        return (f"{where} holds no model weights tfvit can read (no {WEIGHTS_NAME}); its files: "
                f"{sorted(listing)[:10]}.")
    fill = (f" If the repository has a {WEIGHTS_NAME}, fill the cache where the hub is reachable: {_fill_command(ref)}."
            if cached_copy else "")
    return (
        f"refusing {ref}: {where} holds its weights only as {', '.join(pickles[:5])}, PyTorch pickles, and loading "
        f"a pickle can run arbitrary code, so tfvit only reads safetensors; nothing of them was downloaded.{fill} The "
        f"hub's conversion bot often has a safetensors copy in a pull request ({HUB_PREFIX}{ref.repo_id}@refs/pr/N, "
        f"see https://huggingface.co/{ref.repo_id}/discussions). Or convert it once, where torch is installed and "
        f"you trust the file:\n" + CONVERT_HINT.format(path=pickles[0])
    )
