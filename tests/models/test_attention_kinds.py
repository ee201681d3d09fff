import keras
import numpy as np
import pytest

import tfvit
from tfvit.models import VisionTransformer
from tfvit.models.attention_kinds import ATTENTION_KINDS

TINY = dict(image_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3)
OPTIONS = {"performer_softmax": {"num_features": 8}, "performer_relu": {"num_features": 8},
           "local2d": {"kernel_size": 3}, "local1d": {"window": 5}, "global": {}}


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_attention_kind_builds_a_vit_that_saves(kind, tmp_path):
    local = kind.startswith("local")
    model = VisionTransformer(**TINY, attention=kind, attention_kwargs=OPTIONS[kind],
                              class_token=not local, pooling="mean" if local else "token")
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    out = model(x).numpy()
    assert out.shape == (2, 3) and np.isfinite(out).all()
    assert type(model.get_layer("blocks.0").attn).__name__ == {
        "global": "MultiHeadSelfAttention", "performer_softmax": "PerformerAttention",
        "performer_relu": "PerformerAttention", "local2d": "NeighborhoodAttention2D",
        "local1d": "LocalAttention1D"}[kind]
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x).numpy(), out, atol=1e-6)


def test_local_attention_needs_a_pure_grid_and_unknown_kinds_fail():
    with pytest.raises(ValueError, match="class_token=False"):
        VisionTransformer(**TINY, attention="local2d")
    with pytest.raises(ValueError, match="attention must be one of"):
        VisionTransformer(**TINY, attention="linear")


def test_study_registry_names():
    names = tfvit.list_models("vit_mnist_patch4_28_*")
    assert len(names) == 10 and "vit_mnist_patch4_28_performer_relu_128" in names
    model = tfvit.create_model("vit_cifar_patch4_32_performer_softmax_16", depth=1)
    attention = model.get_layer("blocks.0").attn
    assert (attention.kernel, attention.num_features) == ("softmax", 16)
