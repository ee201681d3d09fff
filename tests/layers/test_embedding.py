import numpy as np
import pytest

import tfvit
from tfvit.layers import ClassToken, PatchEmbedding, PositionEmbedding, resize_position_embedding
from tests import reference


def test_patch_embedding_equals_flattened_patch_projection():
    images = np.random.default_rng(0).normal(size=(2, 12, 8, 3)).astype("float32")
    layer = PatchEmbedding(4, 16)
    tokens = layer(images).numpy()
    assert tokens.shape == (2, 3 * 2, 16)
    kernel, bias = layer.proj.kernel.numpy(), layer.proj.bias.numpy()
    for b in range(2):
        expected = reference.patchify(images[b].astype(np.float64), kernel, bias).reshape(-1, 16)
        np.testing.assert_allclose(tokens[b], expected, atol=1e-5)


def test_patch_embedding_grid_output_with_norm():
    layer = PatchEmbedding((2, 4), 8, use_norm=True, flatten=False)
    out = layer(np.ones((3, 8, 8, 1), "float32")).numpy()
    assert out.shape == (3, 4, 2, 8)
    assert [w.path.split("/", 1)[1] for w in layer.weights] == ["proj/kernel", "proj/bias", "norm/gamma", "norm/beta"]


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 16, 16), "rank 4"),
        ((2, 8, 16, 3), "smaller than the patch size"),
        ((2, 20, 16, 3), "not divisible by the patch size"),
    ],
)
def test_patch_embedding_rejects_bad_images(shape, message):
    with pytest.raises(ValueError, match=message):
        PatchEmbedding(16, 8)(np.zeros(shape, "float32"))


def test_patch_embedding_rejects_other_channel_count_after_build():
    layer = PatchEmbedding(4, 8)
    layer(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="axis -1"):
        layer(np.zeros((1, 8, 8, 1), "float32"))


def test_class_token_is_prepended_to_every_sequence():
    tokens = np.random.default_rng(1).normal(size=(3, 5, 4)).astype("float32")
    layer = ClassToken()
    out = layer(tokens).numpy()
    assert out.shape == (3, 6, 4)
    np.testing.assert_array_equal(out[:, 1:], tokens)
    for b in range(3):
        np.testing.assert_array_equal(out[b, 0], layer.cls_token.numpy()[0, 0])


def test_position_embedding_adds_its_table_and_checks_token_count():
    layer = PositionEmbedding((2, 3), num_prefix_tokens=1)
    tokens = np.random.default_rng(2).normal(size=(2, 7, 4)).astype("float32")
    np.testing.assert_allclose(layer(tokens).numpy(), tokens + layer.pos_embed.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="expected 7 tokens"):
        PositionEmbedding((2, 3))(np.zeros((1, 6, 4), "float32"))


def _bilinear_half_pixel(grid, out_h, out_w):
    """Bilinear resize with half-pixel centres and edge clamping, one output pixel at a time."""
    in_h, in_w, _ = grid.shape
    out = np.zeros((out_h, out_w, grid.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            y = min(max((i + 0.5) * in_h / out_h - 0.5, 0), in_h - 1)
            x = min(max((j + 0.5) * in_w / out_w - 0.5, 0), in_w - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            fy, fx = y - y0, x - x0
            out[i, j] = ((1 - fy) * (1 - fx) * grid[y0, x0] + (1 - fy) * fx * grid[y0, x1]
                         + fy * (1 - fx) * grid[y1, x0] + fy * fx * grid[y1, x1])
    return out


def test_resize_position_embedding_keeps_prefix_and_interpolates_grid():
    table = np.random.default_rng(3).normal(size=(1, 1 + 3 * 4, 5)).astype("float32")
    resized = resize_position_embedding(table, (3, 4), (6, 5), num_prefix_tokens=1, interpolation="bilinear")
    assert resized.shape == (1, 1 + 30, 5)
    np.testing.assert_array_equal(resized[0, 0], table[0, 0])
    expected = _bilinear_half_pixel(table[0, 1:].reshape(3, 4, 5).astype(np.float64), 6, 5)
    np.testing.assert_allclose(resized[0, 1:].reshape(6, 5, 5), expected, atol=1e-5)
    np.testing.assert_array_equal(resize_position_embedding(table, (3, 4), (3, 4)), table)
    with pytest.raises(ValueError, match="does not hold"):
        resize_position_embedding(table, (4, 4), (6, 6))


def test_vit_weights_load_at_another_resolution_with_resized_positions(tmp_path):
    small = tfvit.create_model("vit_mnist_patch4_28", depth=1)
    path = str(tmp_path / "small.weights.h5")
    small.save_weights(path)
    large = tfvit.create_model("vit_mnist_patch4_28", depth=1, image_size=56)
    large.load_weights(path)
    expected = resize_position_embedding(small.get_layer("pos_embed").pos_embed.numpy(), (7, 7), (14, 14))
    np.testing.assert_allclose(large.get_layer("pos_embed").pos_embed.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(large.get_layer("head").kernel.numpy(), small.get_layer("head").kernel.numpy())
