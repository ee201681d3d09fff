"""Every ```python block of README.md runs, so the README cannot drift from the code.

Each block runs alone in a fresh interpreter (a reader copies one block, not the page), in an empty
folder, with ``TFVIT_DATA_DIR`` pointing at the session's small generated datasets (``owner_data``:
512 training and 128 test examples per dataset, so a block's ``limit=`` or full split stays small).
The checkpoint folders the README downloads (``swin-tiny/``, ``vit-tiny/``) are stood in for by
randomly initialised Hugging Face models of the same architectures, written with transformers; so are the
hub repositories its blocks name (``pretrained=True``, ``hf-hub:...``), in a hub cache written as the client
writes it (tests/convert/hub_cache.py), which the blocks read with ``HF_HUB_OFFLINE=1``.

Also checked: the README keeps its Python blocks, and its links to docs/ files and to its own headings
(and the docs' links to each other and back) lead somewhere.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MIN_PYTHON_BLOCKS = 5  # the API, data, saliency, checkpoint and fine-tuning examples
TIMEOUT_S = 600

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def fenced_blocks(text):
    """(info string, code, 1-based line of the opening fence) of each fenced block, in order."""
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]


def python_blocks():
    return [(code, line) for info, code, line in fenced_blocks(README.read_text()) if info == "python"]


BLOCKS = python_blocks()

# Folders the README's blocks read checkpoints from: transformers configurations of their architectures.
CHECKPOINTS = {
    "swin-tiny": ("SwinConfig", "SwinForImageClassification", {}),  # the defaults are Swin-T's
    "vit-tiny": ("ViTConfig", "ViTForImageClassification",
                 {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768}),
}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """{folder name: path} of random Hugging Face checkpoints standing in for the README's downloads."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("readme_checkpoints")
    torch.manual_seed(0)
    folders = {}
    for name, (config_class, model_class, kwargs) in CHECKPOINTS.items():
        config = getattr(transformers, config_class)(num_labels=1000, **kwargs)
        getattr(transformers, model_class)(config).eval().save_pretrained(root / name, safe_serialization=True)
        folders[name] = root / name
    return folders


# Hub repositories the README's blocks load by name, and the stand-in folder each one gets.
HUB_REPOSITORIES = {
    "timm/swin_tiny_patch4_window7_224.ms_in1k": "swin-tiny",
    "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k": "vit-tiny",
    "facebook/deit-tiny-patch16-224": "vit-tiny",
}


@pytest.fixture(scope="session")
def hub_home(checkpoints, tmp_path_factory):
    """An HF_HOME whose hub cache holds the stand-ins under the repository ids the README names."""
    from tests.convert.hub_cache import cache_folder_files

    home = tmp_path_factory.mktemp("readme_hf_home")
    for repo_id, folder in HUB_REPOSITORIES.items():
        cache_folder_files(home, repo_id, checkpoints[folder])
    return home


def _needs_checkpoints(code):
    return any(f"{name}/" in code for name in CHECKPOINTS)


def _needs_hub(code):
    return "pretrained=True" in code or "hf-hub:" in code


def test_readme_keeps_its_python_blocks():
    assert len(BLOCKS) >= MIN_PYTHON_BLOCKS, f"README.md has {len(BLOCKS)} python blocks, expected >= {MIN_PYTHON_BLOCKS}"


@pytest.mark.parametrize("code", [code for code, _ in BLOCKS], ids=[f"README.md:{line}" for _, line in BLOCKS])
def test_python_block_runs(code, owner_data, tmp_path, request):
    if _needs_checkpoints(code):
        for name, folder in request.getfixturevalue("checkpoints").items():
            (tmp_path / name).symlink_to(folder, target_is_directory=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFVIT_DATA_DIR=str(owner_data), TFVIT_OFFLINE="1",
               MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if _needs_hub(code):
        env.update(HF_HOME=str(request.getfixturevalue("hub_home")), HF_HUB_OFFLINE="1")
        for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
            env.pop(variable, None)
    env.pop("KERAS_BACKEND", None)  # the README's blocks are for the default backend, TensorFlow
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, (f"the block exited with status {result.returncode}:\n{code}\n"
                                    f"--- stderr (last 3000 characters) ---\n{result.stderr[-3000:]}")
    # tfvit imported first keeps TensorFlow's start-up lines to TF_CPP_MIN_LOG_LEVEL (tfvit/_quiet_import.py).
    assert "All log messages before absl::InitializeLog()" not in result.stderr, (
        f"the block prints TensorFlow's start-up lines: import tfvit before keras or tensorflow.\n{code}")


# ---------------------------------------------------------------- links

def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped (but - and _), spaces to -."""
    text = re.sub(r"`|\*\*?|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    """Every heading anchor of a markdown file (duplicates numbered as GitHub numbers them)."""
    text = _FENCE.sub("", path.read_text())
    seen, result = {}, set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def links(path):
    """(target, fragment) of every relative markdown link outside code blocks."""
    text = _FENCE.sub("", path.read_text())
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, fragment = target.partition("#")
        found.append((file, fragment))
    return found


def test_github_anchor():
    assert github_anchor("The GAO study: `recipes/gao_swin.py`") == "the-gao-study-recipesgao_swinpy"
    assert github_anchor("Run flags (every recipe)") == "run-flags-every-recipe"
    assert github_anchor("Getting the data, offline too") == "getting-the-data-offline-too"


MARKDOWN = [README] + sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("path", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_links_lead_somewhere(path):
    broken = []
    for file, fragment in links(path):
        target = (path.parent / file).resolve() if file else path
        if not target.exists():
            broken.append(f"{file}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{file}#{fragment}: no such heading in {target.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)} has broken links: {broken}"


def test_readme_links_every_docs_file():
    linked = {(README.parent / file).resolve() for file, _ in links(README) if file.startswith("docs/")}
    assert linked, "README.md links to no docs/ file"
    assert set(DOCS.glob("*.md")) <= linked, f"docs/ files the README does not link: {set(DOCS.glob('*.md')) - linked}"
