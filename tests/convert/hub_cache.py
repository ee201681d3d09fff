"""A Hugging Face hub cache written by hand, as ``huggingface_hub`` lays it out, for tests without a network.

    <HF_HOME>/hub/models--ORG--NAME/
        blobs/<sha256 of the file>                 the files' bytes
        snapshots/<commit>/<file>                   relative symlinks to the blobs
        refs/<revision>                             the commit, without a newline

The client reads exactly this when ``HF_HUB_OFFLINE=1`` (or when the hub cannot be reached): a revision's ref
names the commit, whose snapshot folder holds the files.
"""

import hashlib
import os
from pathlib import Path


def repo_cache_folder(hf_home, repo_id):
    return Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def write_hub_cache(hf_home, repo_id, files, revision="main"):
    """Cache ``files`` ({name in the repository: path of its content}) as revision ``revision`` of ``repo_id``
    under ``hf_home``; returns the snapshot folder. The commit is a digest of the files, as stable as a real one."""
    repo = repo_cache_folder(hf_home, repo_id)
    contents = {name: Path(path).read_bytes() for name, path in sorted(files.items())}
    commit = hashlib.sha1(b"".join(name.encode() + data for name, data in contents.items())).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in contents.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot


def cache_folder_files(hf_home, repo_id, folder, revision="main", names=None):
    """``write_hub_cache`` of the files in ``folder`` (those in ``names``, else all)."""
    names = names or sorted(os.listdir(folder))
    return write_hub_cache(hf_home, repo_id, {name: Path(folder) / name for name in names}, revision)
