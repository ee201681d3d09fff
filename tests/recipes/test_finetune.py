"""recipes/finetune.py end to end on a few images of the generated owners'-format CIFAR-10: one model from a
Hugging Face checkpoint, one from scratch, partial fine-tuning, and the saliency figure."""

import csv
import json

import numpy as np
import pytest

from tests.recipes.loading import load_recipe

def _hf_checkpoint(folder):
    """A randomly initialised Hugging Face ViT with vit_cifar_patch4_32's shape (1000 ImageNet-style classes)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=6,
                                    num_attention_heads=3, intermediate_size=384, num_labels=1000)
    transformers.ViTForImageClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder / "model.safetensors"


def test_finetune_recipe_from_a_checkpoint_and_from_scratch(tmp_path, capsys, owner_data):
    checkpoint = _hf_checkpoint(tmp_path / "hf_vit")
    load_recipe("finetune").main([
        "--models", "vit_cifar_patch4_32,swin_cifar_patch2_window4_32",
        "--checkpoint", f"vit_cifar_patch4_32={checkpoint}", "--modes", "partial",
        "--layer-decay", "0.75", "--data-dir", str(owner_data), "--epochs", "1", "--batch-size", "16",
        "--limit-train", "32", "--limit-test", "16", "--saliency-images", "2", "--logdir", str(tmp_path / "logs"),
        "--verbose", "0", "--save-best",
    ])
    printed = capsys.readouterr().out
    assert "swin_cifar_patch2_window4_32: from scratch (no --checkpoint or --pretrained given for it)" in printed
    out = tmp_path / "logs" / "finetune" / "cifar10"
    results = json.loads((out / "results.json").read_text())
    vit, swin = results
    assert vit["config"]["pretrained"] == str(checkpoint) and swin["config"]["pretrained"] == ""
    # Partial, by default half of the 6 blocks frozen: blocks 3-5, the final norm and the new 10-class head train.
    d, hidden = 192, 384
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d) + 4 * d
    assert vit["trainable_params"] == 3 * block + 2 * d + (d * 10 + 10)
    table = (out / "study_table.md").read_text()
    assert "| vit_cifar_patch4_32 | partial | pretrained (model.safetensors) |" in table
    assert "| swin_cifar_patch2_window4_32 | partial | from scratch |" in table
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (out / "saliency.png").read_bytes()[:4] == b"\x89PNG"
    # The same overlays in TensorBoard: per model, explain's map and Grad-CAM at the study's target, two images each.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tfvit.vis import AUTO

    events = EventAccumulator(str(out / "saliency"), size_guidance={"tensors": 0}).Reload()
    tags = sorted(events.Tags()["tensors"])
    assert [t.split(": ")[0] for t in tags] == sorted([f"saliency/explain ({AUTO['vit_token']})",
                                                       f"saliency/explain ({AUTO['swin']})"]
                                                      + ["saliency/gradcam (study)"] * 2)
    assert all(len(events.Tensors(t)[0].tensor_proto.string_val) == 2 + 2 for t in tags)  # width, height, 2 PNGs
    assert np.isfinite([r["test_accuracy"] for r in results]).all()
    # The checkpoint really reached the trained model: frozen layers still hold the Hugging Face tensors, in the
    # final weights and in the best epoch's model that --save-best keeps.
    import keras
    from safetensors.numpy import load_file

    from tfvit.experiments.run import trained_model

    hf = load_file(str(checkpoint))
    for trained in (trained_model(vit, out), keras.models.load_model(out / vit["folder"] / "best.keras")):
        np.testing.assert_allclose(trained.get_layer("patch_embed").proj.kernel.numpy(),
                                   hf["vit.embeddings.patch_embeddings.projection.weight"].transpose(2, 3, 1, 0))
        np.testing.assert_allclose(trained.get_layer("blocks.0").mlp.fc1.kernel.numpy(),
                                   hf["vit.encoder.layer.0.intermediate.dense.weight"].T)


def test_finetune_recipe_from_a_hub_checkpoint_offline(tmp_path, owner_data):
    """--checkpoint MODEL=hf-hub:ORG/NAME through a hub cache with HF_HUB_OFFLINE=1 (a command, so that the hub client
    reads the environment): the run starts from it and reads its images with the checkpoint's preprocessing; a
    repository that is not cached stops it before training with one paragraph."""
    import os
    import subprocess
    import sys

    import keras

    from tests.convert.hub_cache import cache_folder_files
    from tests.recipes.loading import ROOT
    from tfvit import data as tfdata
    from tfvit.experiments.run import trained_model

    folder = _hf_checkpoint(tmp_path / "hf_vit").parent
    processor = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 3,
                 "size": {"height": 32, "width": 32}, "do_normalize": True, "do_resize": True}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    home = tmp_path / "hf_home"
    cache_folder_files(home, "acme/cifar-vit", folder)
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", TFVIT_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    logdir = tmp_path / "logs"

    def finetune(*flags):
        command = [sys.executable, str(ROOT / "recipes" / "finetune.py"), "--models", "vit_cifar_patch4_32", *flags,
                   "--modes", "full", "--data-dir", str(owner_data), "--epochs", "1", "--batch-size", "16",
                   "--limit-train", "32", "--limit-test", "16", "--saliency-images", "0", "--logdir", str(logdir),
                   "--verbose", "0", "--precision", "float32", "--no-jit"]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    done = finetune("--checkpoint", "vit_cifar_patch4_32=hf-hub:acme/cifar-vit")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vit_cifar_patch4_32: pretrained (hf-hub:acme/cifar-vit)" in done.stdout
    out = logdir / "finetune" / "cifar10"
    (result,) = json.loads((out / "results.json").read_text())
    assert result["config"]["pretrained"] == "hf-hub:acme/cifar-vit"
    assert result["preprocessing"] == {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": [32, 32],
                                       "interpolation": "bicubic"}
    assert "| vit_cifar_patch4_32 | full | pretrained (hf-hub:acme/cifar-vit) |" in (out / "study_table.md").read_text()
    # The run was evaluated on images normalised as the checkpoint's, not with CIFAR-10's statistics.
    model = trained_model(result, out)
    model.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True))

    def test_loss(preprocessing):
        return model.evaluate(tfdata.load("cifar10", "test", 16, limit=16, one_hot=True, data_dir=str(owner_data),
                                          preprocessing=preprocessing), verbose=0)

    assert test_loss(result["preprocessing"]) == pytest.approx(result["test_loss"], rel=1e-5)
    assert abs(test_loss(None) - result["test_loss"]) > 1e-3

    missing = finetune("--checkpoint", "vit_cifar_patch4_32=hf-hub:acme/not-cached")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: hf-hub:acme/not-cached: not in the Hugging Face cache, and "
                                     "HF_HUB_OFFLINE=1 forbids downloading it.")
    assert str(home / "hub") in missing.stderr and "\n\n" not in missing.stderr.strip()
