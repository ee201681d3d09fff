"""recipes/performer_study.py end to end on a few images of the generated owners'-format MNIST."""

import csv

import pytest

from tests.recipes.loading import load_recipe


def test_study_recipe_writes_its_table_and_figure(tmp_path, owner_data):
    recipe = load_recipe("performer_study")
    recipe.main(["--dataset", "mnist", "--data-dir", str(owner_data), "--models", "performer_softmax_16,local2d,global",
                 "--epochs", "1", "--batch-size", "32", "--limit-train", "96", "--limit-test", "64",
                 "--logdir", str(tmp_path), "--verbose", "0"])
    out = tmp_path / "performer_study" / "mnist"
    table = (out / "study_table.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["performer_softmax_16", "local2d", "global"]
    assert "0.9919" in table[2]  # the study's published validation accuracy for Performer (Softmax16)
    with open(out / "results.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == [
            "vit_mnist_patch4_28_performer_softmax_16", "vit_mnist_patch4_28_local2d", "vit_mnist_patch4_28"]
    assert (out / "study.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="unknown study model"):
        recipe.main(["--models", "performer_relu_7", "--logdir", str(tmp_path)])
