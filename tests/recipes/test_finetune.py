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
    assert "swin_cifar_patch2_window4_32: from scratch (no --checkpoint given for it)" in printed
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
