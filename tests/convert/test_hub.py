"""Checkpoints by hub name (``pretrained=True``, ``pretrained="hf-hub:ORG/NAME[@REVISION]"``) load through the
Hugging Face hub client's own cache, with no network.

A hub cache is written by hand in the client's layout (tests/convert/hub_cache.py) from random transformers
ViT / Swin models saved with ``save_pretrained``, a random timm ViT-Ti saved as timm saves its hub repositories
(under the registry's default id for ``vit_tiny_patch16_224``) and a repository holding only a pickle. A fresh
process (tests/convert/hub_child.py) then loads them with ``HF_HOME`` pointing at it and ``HF_HUB_OFFLINE=1``;
its logits must equal transformers' and timm's to 1e-4, and it must not open a single connection.
"""

import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

from tests.convert.hub_cache import cache_folder_files, repo_cache_folder  # noqa: E402
from tests.convert.test_hf_parity import SWINS, VIT, _nchw, _randomise  # noqa: E402
from tests.recipes.loading import ROOT  # noqa: E402
from tfvit.convert.hub import HubReference, parse_hub_reference  # noqa: E402
from tfvit.convert.preprocessing import checkpoint_preprocessing  # noqa: E402
from tfvit.models import Preprocessing, pretrained_source  # noqa: E402

ATOL = 1e-4
SWIN = SWINS["padded_3_stages"]


class _MakesAFolderWhenUnpickled:
    """Unpickling this runs os.mkdir(marker): the proof that something unpickled the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _torch_logits(model, images):
    with torch.no_grad():
        return model(_nchw(images)).logits.numpy() if hasattr(model, "config") else model(_nchw(images)).numpy()


def _run_child(home, images, out, **env):
    environment = dict(os.environ, HF_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_DISABLE_TELEMETRY="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT"):
        environment.pop(key, None)
    environment.pop("KERAS_BACKEND", None)
    environment.update(env)
    done = subprocess.run([sys.executable, "-m", "tests.convert.hub_child", str(images), str(out)], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(f"{out}.json") as f:
        return json.load(f), dict(np.load(f"{out}.npz"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The written cache, the reference logits, and what the offline child process made of every case."""
    root = tmp_path_factory.mktemp("hub")
    home = root / "hf_home"
    rng = np.random.default_rng(0)
    images = {"vit": rng.normal(size=(2, 32, 32, 3)).astype(np.float32),
              "swin": rng.normal(size=(2, 28, 28, 3)).astype(np.float32),
              "imagenet": rng.normal(size=(2, 224, 224, 3)).astype(np.float32)}
    np.savez(root / "images.npz", **images)
    expected = {}

    # transformers: a ViT with its image processor (bicubic, 32 px, mean/std 0.5) on main, another at tag v1.
    for seed, folder, revision in ((0, "vit", "main"), (1, "vit_v1", "v1")):
        vit = _randomise(transformers.ViTForImageClassification(transformers.ViTConfig(**VIT)), seed=seed)
        vit.save_pretrained(root / folder, safe_serialization=True)
        processor = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
                     "image_std": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor", "resample": 3,
                     "rescale_factor": 1 / 255, "size": {"height": 32, "width": 32}}
        (root / folder / "preprocessor_config.json").write_text(json.dumps(processor))
        cache_folder_files(home, "acme/tiny-vit", root / folder, revision=revision)
        expected[folder] = _torch_logits(vit, images["vit"])
    swin = _randomise(transformers.SwinForImageClassification(transformers.SwinConfig(**SWIN)), seed=2)
    swin.save_pretrained(root / "swin", safe_serialization=True)
    cache_folder_files(home, "acme/tiny-swin", root / "swin")
    expected["swin"] = _torch_logits(swin, images["swin"])

    # timm: ViT-Ti as timm writes its hub repositories (model.safetensors, config.json with pretrained_cfg),
    # under the id the registry gives vit_tiny_patch16_224; a random head makes the logits of order 1.
    from tests.timm_import import import_timm

    timm = import_timm()
    from timm.models import save_for_hf

    torch.manual_seed(3)
    timm_vit = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    with torch.no_grad():
        timm_vit.head.weight.normal_()
    save_for_hf(timm_vit, root / "timm_vit_tiny", safe_serialization=True)
    cache_folder_files(home, pretrained_source("vit_tiny_patch16_224").hub_id, root / "timm_vit_tiny")
    expected["registry_default"] = _torch_logits(timm_vit, images["imagenet"])

    # A repository whose weights are only a pickle: unpickling it would create the marker folder.
    marker = root / "unpickled"
    (root / "pickled").mkdir()
    (root / "pickled" / "config.json").write_text((root / "vit" / "config.json").read_text())
    (root / "pickled" / "pytorch_model.bin").write_bytes(pickle.dumps(_MakesAFolderWhenUnpickled(str(marker))))
    cache_folder_files(home, "acme/pickled-vit", root / "pickled")

    results, logits = _run_child(home, root / "images.npz", root / "offline", HF_HUB_OFFLINE="1")
    return dict(root=root, home=home, images=root / "images.npz", expected=expected, results=results, logits=logits,
                marker=marker, timm_folder=root / "timm_vit_tiny")


def _loaded(hub, case):
    result = hub["results"][case]
    assert result["ok"], f"{case}: {result.get('type')}: {result.get('message')}"
    return result


@pytest.mark.parametrize("case, reference", [("vit", "vit"), ("vit_from_pretrained", "vit"), ("swin", "swin")])
def test_hub_checkpoints_give_transformers_logits(hub, case, reference):
    _loaded(hub, case)
    np.testing.assert_allclose(hub["logits"][case], hub["expected"][reference], atol=ATOL)


def test_a_revision_loads_that_revision(hub):
    _loaded(hub, "vit_v1")
    np.testing.assert_allclose(hub["logits"]["vit_v1"], hub["expected"]["vit_v1"], atol=ATOL)
    assert np.abs(hub["expected"]["vit_v1"] - hub["expected"]["vit"]).max() > 100 * ATOL  # two different models


def test_pretrained_true_loads_the_registry_checkpoint_with_timm_logits_and_preprocessing(hub):
    result = _loaded(hub, "registry_default")
    np.testing.assert_allclose(hub["logits"]["registry_default"], hub["expected"]["registry_default"], atol=ATOL)
    assert np.std(hub["expected"]["registry_default"]) > 0.1  # logits of order 1: the comparison can fail
    registry = pretrained_source("vit_tiny_patch16_224").preprocessing
    assert Preprocessing(**result["preprocessing"]) == registry
    # timm's own config.json says the same: what a timm/* repository of the registry declares.
    assert checkpoint_preprocessing(str(hub["timm_folder"])) == registry


def test_a_transformers_checkpoint_brings_its_image_processor_settings(hub):
    assert _loaded(hub, "vit")["preprocessing"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "image_size": [32, 32],
                                                   "interpolation": "bicubic"}
    assert _loaded(hub, "swin")["preprocessing"] is None  # no preprocessor_config.json: the data's statistics


def test_offline_without_a_cached_copy_fails_at_once_saying_how_to_fill_the_cache(hub):
    result = hub["results"]["missing"]
    assert not result["ok"] and result["type"] == "CheckpointUnavailable"
    message = result["message"]
    cache = str(hub["home"] / "hub")
    for part in ("hf-hub:acme/not-cached", "HF_HUB_OFFLINE=1", cache, str(repo_cache_folder(hub["home"],
                                                                                           "acme/not-cached")),
                 'hf download acme/not-cached --include "model*.safetensors*" --include "*config.json"'):
        assert part in message, f"{part!r} not in: {message}"
    # No case of the offline process opened a connection: the error comes without waiting on a network.
    assert all(r["connections"] == [] for r in hub["results"].values()), hub["results"]


def test_a_repository_with_only_a_pickle_is_refused_unopened(hub):
    result = hub["results"]["pickle_only"]
    assert not result["ok"] and result["type"] == "ValueError"
    assert "refusing hf-hub:acme/pickled-vit" in result["message"] and "pytorch_model.bin" in result["message"]
    assert "safetensors.torch.save_file" in result["message"]  # the lines that convert it
    assert not hub["marker"].exists()


def test_with_the_hub_out_of_reach_the_cache_serves_and_a_missing_copy_says_so(hub, tmp_path):
    """Not offline by the switch, but by circumstance (this machine's case): a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: connections to it are refused at once
    results, logits = _run_child(hub["home"], hub["images"], tmp_path / "unreachable",
                                 HF_ENDPOINT=f"http://127.0.0.1:{port}")
    _loaded({"results": results}, "vit")
    np.testing.assert_allclose(logits["vit"], hub["expected"]["vit"], atol=ATOL)
    missing = results["missing"]
    assert missing["type"] == "CheckpointUnavailable" and "the hub could not be reached" in missing["message"]
    assert str(hub["home"] / "hub") in missing["message"]
    pickled = results["pickle_only"]  # the repository's listing cannot be had: the cached copy's files are named
    assert pickled["type"] == "ValueError" and "the cached copy of hf-hub:acme/pickled-vit" in pickled["message"]
    assert "pytorch_model.bin" in pickled["message"] and not hub["marker"].exists()


def test_hub_references_are_parsed_or_refused_with_the_form():
    assert parse_hub_reference("hf-hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k") == HubReference(
        "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert parse_hub_reference("hf-hub:org/name@refs/pr/3") == HubReference("org/name", "refs/pr/3")
    assert str(HubReference("org/name", "v1")) == "hf-hub:org/name@v1"
    for bad in ("hf-hub:name-without-org", "hf-hub:org/name@", "hf-hub:org/../x", "hf-hub:/name", "hf-hub:a/b/c"):
        with pytest.raises(ValueError, match="expected hf-hub:ORG/NAME"):
            parse_hub_reference(bad)
