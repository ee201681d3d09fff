import keras
import numpy as np
import pytest

from tests import reference
from tfvit.models import SwinTransformer, VisionTransformer
from tfvit.vis import default_target_layer, gradcam, normalize_maps, resize_maps


def bilinear_half_pixel(maps, size):
    """Resize (B, h, w) maps to ``size`` the textbook way: output pixel y samples the input at
    (y + 0.5) * h / H - 0.5, clamped to the edge cells, interpolated linearly along each axis."""
    batch, h, w = maps.shape
    out_h, out_w = size
    out = np.zeros((batch, out_h, out_w))
    for y in range(out_h):
        sy = min(max((y + 0.5) * h / out_h - 0.5, 0.0), h - 1)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for x in range(out_w):
            sx = min(max((x + 0.5) * w / out_w - 0.5, 0.0), w - 1)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = (1 - fx) * maps[:, y0, x0] + fx * maps[:, y0, x1]
            bottom = (1 - fx) * maps[:, y1, x0] + fx * maps[:, y1, x1]
            out[:, y, x] = (1 - fy) * top + fy * bottom
    return out


def min_max(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


# --- A CNN whose Grad-CAM is known in closed form -------------------------------------------------------
# features F = ReLU(conv 2x2 stride 2) -> global average pooling -> logits y = W^T mean_ij F_ij + b.
# dy_c/dF_ijk = W_kc / (h w) at every position, so (Selvaraju et al. 2017, section 3.1, the CAM case):
#   Grad-CAM   = ReLU(sum_k W_kc F_k)
#   Grad-CAM++ = ReLU(sum_k ReLU(W_kc) F_k)   (its alphas are equal over positions, then normalised to 1/(hw))


def cam_cnn(head_activation=None, softmax_layer=False, scale=1.0):
    inputs = keras.Input((6, 6, 2), name="pixels")
    x = keras.layers.Conv2D(5, 2, strides=2, activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, activation=head_activation, name="head")(x)
    if softmax_layer:
        out = keras.layers.Softmax(name="probabilities")(out)
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(7)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * (scale if w.path.startswith("head") else 1.0))
    return model


def cnn_features(model, images):
    w = reference.weights_of(model)
    return np.maximum(np.stack([reference.patchify(x, w["features/kernel"], w["features/bias"]) for x in images]), 0)


def cnn_logits(model, images):
    w = reference.weights_of(model)
    return cnn_features(model, images).mean((1, 2)) @ w["head/kernel"] + w["head/bias"]


IMAGES = np.random.default_rng(3).normal(size=(3, 6, 6, 2)).astype("float32")


@pytest.mark.parametrize("class_index", [None, 1, [2, 0, 1]])
def test_gradcam_on_a_cnn_is_the_class_activation_map(class_index):
    model = cam_cnn()
    features, kernel = cnn_features(model, IMAGES), reference.weights_of(model)["head/kernel"]
    classes = {None: cnn_logits(model, IMAGES).argmax(-1), 1: [1, 1, 1]}.get(
        class_index if not isinstance(class_index, list) else -1, class_index)
    expected = np.stack([np.maximum(features[b] @ kernel[:, c], 0) for b, c in enumerate(classes)])
    got = gradcam(model, IMAGES, class_index=class_index, upsample=False)
    assert got.shape == (3, 3, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, normalize_maps(expected), atol=1e-5)
    assert len(set(map(tuple, got.reshape(3, -1).round(3)))) == 3  # three different maps, not one repeated


@pytest.mark.parametrize("method", ["gradcam++", "layercam"])
def test_gradcam_plus_plus_and_layercam_on_a_cnn_with_huge_logits(method):
    # Both reduce to ReLU(sum_k ReLU(W_kc) F_k) here: LayerCAM (Jiang et al. 2021) weights each position by
    # its positive gradient, ReLU(W_kc) / (h w). Head x 1e3: logits in the thousands, where exp(logit)
    # (Grad-CAM++'s score) overflows float32.
    model = cam_cnn(scale=1e3)
    assert np.abs(cnn_logits(model, IMAGES)).max() > 100
    features, kernel = cnn_features(model, IMAGES), reference.weights_of(model)["head/kernel"]
    expected = np.stack([np.maximum(features[b] @ np.maximum(kernel[:, 2], 0), 0) for b in range(3)])
    got = gradcam(model, IMAGES, class_index=2, method=method, upsample=False)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, normalize_maps(expected), atol=1e-5)


def corner_aligned_bilinear(grid, size):
    """Resize (h, w) with the corners of the grid on the corner pixels: input coordinate o (in - 1) / (out - 1)."""
    h, w = grid.shape
    out = np.zeros(size)
    for y in range(size[0]):
        for x in range(size[1]):
            sy, sx = y * (h - 1) / (size[0] - 1), x * (w - 1) / (size[1] - 1)
            y0, x0 = min(int(sy), h - 2), min(int(sx), w - 2)
            fy, fx = sy - y0, sx - x0
            out[y, x] = ((1 - fy) * ((1 - fx) * grid[y0, x0] + fx * grid[y0, x0 + 1])
                         + fy * ((1 - fx) * grid[y0 + 1, x0] + fx * grid[y0 + 1, x0 + 1]))
    return out


def test_scorecam_on_a_cnn_matches_the_paper():
    # Wang et al. 2020, eqs. 3-6: each feature map, upsampled (tf-keras-vis: corner-aligned linear) and
    # min-max scaled, masks the input; its weight is the softmax probability of the class on the masked image.
    model = cam_cnn()
    features = cnn_features(model, IMAGES)
    expected = []
    for b, c in enumerate([0, 2, 1]):
        weights = []
        for k in range(features.shape[-1]):
            mask = corner_aligned_bilinear(features[b, :, :, k], (6, 6))
            mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-7)
            logits = cnn_logits(model, IMAGES[b:b + 1] * mask[None, :, :, None])[0]
            weights.append(reference.softmax(logits)[c])
        expected.append(np.maximum(features[b] @ np.array(weights), 0))
    got = gradcam(model, IMAGES, class_index=[0, 2, 1], method="scorecam", upsample=False)
    np.testing.assert_allclose(got, normalize_maps(np.stack(expected)), atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "layercam"])
@pytest.mark.parametrize("variant", [{"head_activation": "softmax"}, {"softmax_layer": True}])
def test_softmax_outputs_are_scored_by_their_logits(method, variant):
    linear = gradcam(cam_cnn(), IMAGES, class_index=[0, 1, 2], method=method, upsample=False)
    np.testing.assert_allclose(
        gradcam(cam_cnn(**variant), IMAGES, class_index=[0, 1, 2], method=method, upsample=False), linear, atol=1e-6
    )


def test_gradcam_upsamples_with_half_pixel_bilinear():
    model = cam_cnn()
    grid = gradcam(model, IMAGES, upsample=False)
    full = gradcam(model, IMAGES)
    assert full.shape == (3, 6, 6) and full.min() == 0.0 and np.allclose(full.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(full, min_max(bilinear_half_pixel(grid, (6, 6))), atol=1e-5)
    np.testing.assert_allclose(resize_maps(grid, (6, 6)), bilinear_half_pixel(grid, (6, 6)), atol=1e-6)


def test_normalize_maps_scales_each_map_and_zeroes_constant_ones():
    maps = np.array([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]])
    np.testing.assert_allclose(normalize_maps(maps), [[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])


# --- Transformers: the Grad-CAM equations with gradients by finite differences of the numpy references ----

def finite_difference_gradcam(features, logit_of, eps=1e-6):
    """Grad-CAM of a (h, w, C) float64 feature grid: alpha_k = mean_ij dy/dF_ijk (central differences)."""
    grads = np.zeros_like(features)
    for index in np.ndindex(features.shape):
        step = np.zeros_like(features)
        step[index] = eps
        grads[index] = (logit_of(features + step) - logit_of(features - step)) / (2 * eps)
    return np.maximum(features @ grads.mean((0, 1)), 0.0)


def scaled_weights(model, scale=0.5, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))
    return model


VIT = {"image_size": (8, 12), "patch_size": 4, "in_channels": 2, "embed_dim": 8, "depth": 2, "num_heads": 2,
       "mlp_ratio": 2.0, "num_classes": 3}


def test_gradcam_on_a_class_token_vit_at_the_last_norm1():
    # Target: the last block's norm1 output u (2x3 patch grid, class token dropped). The logit depends on u
    # through that block's attention (the residual carries the block's input z), then the final norm and head.
    model = scaled_weights(VisionTransformer(**VIT))
    images = np.random.default_rng(1).normal(size=(2, 8, 12, 2)).astype("float32")
    w = reference.weights_of(model)
    assert default_target_layer(model) == "blocks.1/norm1"
    expected = []
    for image, c in zip(images.astype(np.float64), [2, 0]):
        z = reference.patchify(image, w["patch_embed/proj/kernel"], w["patch_embed/proj/bias"]).reshape(6, 8)
        z = np.concatenate([w["cls_token/cls_token"][0], z]) + w["pos_embed/pos_embed"][0]
        z = reference.vit_block(z, w, "blocks.0/", 2)
        u = reference.layer_norm(z, w["blocks.1/norm1/gamma"], w["blocks.1/norm1/beta"], 1e-6)

        def logit(patches, z=z, u=u, c=c):
            normed = np.concatenate([u[:1], patches.reshape(6, 8)])
            x = z + reference.global_attention(normed, w, "blocks.1/attn/", 2)
            x = x + reference.mlp(reference.layer_norm(x, w["blocks.1/norm2/gamma"], w["blocks.1/norm2/beta"], 1e-6),
                                  w, "blocks.1/mlp/")
            pooled = reference.layer_norm(x, w["norm/gamma"], w["norm/beta"], 1e-6)[0]
            return (pooled @ w["head/kernel"] + w["head/bias"])[c]

        expected.append(finite_difference_gradcam(u[1:].reshape(2, 3, 8), logit))
    got = gradcam(model, images, class_index=[2, 0], upsample=False)
    assert got.shape == (2, 2, 3)
    np.testing.assert_allclose(got, normalize_maps(np.stack(expected)), atol=1e-4)


def test_gradcam_on_a_mean_pooling_vit_is_the_class_activation_map():
    # Target "norm": the logit is W^T mean_j u_j + b, so Grad-CAM = ReLU(u_j . W_c) per patch, exactly.
    model = scaled_weights(VisionTransformer(**{**VIT, "class_token": False, "pooling": "mean"}))
    images = np.random.default_rng(2).normal(size=(2, 8, 12, 2)).astype("float32")
    w = reference.weights_of(model)
    assert default_target_layer(model) == "norm"
    expected = []
    for image in images.astype(np.float64):
        z = reference.patchify(image, w["patch_embed/proj/kernel"], w["patch_embed/proj/bias"]).reshape(6, 8)
        z = z + w["pos_embed/pos_embed"][0]
        for i in range(2):
            z = reference.vit_block(z, w, f"blocks.{i}/", 2)
        u = reference.layer_norm(z, w["norm/gamma"], w["norm/beta"], 1e-6)
        expected.append(np.maximum(u @ w["head/kernel"][:, 1], 0).reshape(2, 3))
    np.testing.assert_allclose(gradcam(model, images, class_index=1, upsample=False),
                               normalize_maps(np.stack(expected)), atol=1e-5)


SWIN = {"image_size": 8, "patch_size": 2, "in_channels": 2, "embed_dim": 4, "depths": (1, 1), "num_heads": (1, 2),
        "window_size": 2, "mlp_ratio": 2.0, "num_classes": 3, "drop_path_rate": 0.0}


@pytest.mark.parametrize("layer", [None, "layers.1"])
def test_gradcam_on_swin(layer):
    # 8x8 images -> 4x4 grid -> stage 1 merged to 2x2; "norm" then mean pooling and the head.
    model = scaled_weights(SwinTransformer(**SWIN))
    images = np.random.default_rng(4).normal(size=(2, 8, 8, 2)).astype("float32")
    w = reference.weights_of(model)
    expected = []
    for image in images.astype(np.float64):
        grid = reference.patchify(image, w["patch_embed/proj/kernel"], w["patch_embed/proj/bias"])
        grid = reference.layer_norm(grid, w["patch_embed/norm/gamma"], w["patch_embed/norm/beta"], 1e-5)
        grid = reference.swin_block(grid, w, "layers.0/blocks.0/", 1, window=2, shift=0)
        grid = reference.patch_merging(grid, w, "layers.1/downsample/")
        grid = reference.swin_block(grid, w, "layers.1/blocks.0/", 2, window=2, shift=0)

        def logit(features):
            pooled = reference.layer_norm(features, w["norm/gamma"], w["norm/beta"], 1e-5).mean((0, 1))
            return (pooled @ w["head/kernel"] + w["head/bias"])[0]

        if layer is None:  # the final norm's output: Grad-CAM = ReLU(u . W_c)
            u = reference.layer_norm(grid, w["norm/gamma"], w["norm/beta"], 1e-5)
            expected.append(np.maximum(u @ w["head/kernel"][:, 0], 0))
        else:
            expected.append(finite_difference_gradcam(grid, logit))
    got = gradcam(model, images, class_index=0, layer=layer, upsample=False)
    assert got.shape == (2, 2, 2)
    np.testing.assert_allclose(got, normalize_maps(np.stack(expected)), atol=1e-4)


def test_gradcam_under_mixed_precision():
    images = np.random.default_rng(5).normal(size=(2, 8, 12, 2)).astype("float32")
    float32 = scaled_weights(VisionTransformer(**VIT))
    expected = gradcam(float32, images, class_index=[0, 1], upsample=False)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = VisionTransformer(**VIT)
    mixed.set_weights(float32.get_weights())
    for method in ("gradcam", "gradcam++"):
        maps = gradcam(mixed, images, class_index=[0, 1], method=method, upsample=False)
        assert maps.dtype == np.float32 and np.isfinite(maps).all() and maps.max() == 1.0
    # bfloat16 keeps about 3 significant digits: the same maps to within a few percent.
    np.testing.assert_allclose(gradcam(mixed, images, class_index=[0, 1], upsample=False), expected, atol=0.1)


@pytest.fixture(scope="module")
def plain_vit():
    return VisionTransformer(**VIT)


def test_named_token_layer_and_default_layers(plain_vit):
    model = plain_vit
    images = np.zeros((1, 8, 12, 2), np.float32)
    assert gradcam(model, images, layer="blocks.0", upsample=False).shape == (1, 2, 3)
    assert default_target_layer(SwinTransformer(**SWIN)) == "norm"
    assert default_target_layer(cam_cnn()) == "features"


def test_gradcam_rejects_what_is_not_a_functional_model():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    for model in (Subclassed(), "vit"):
        with pytest.raises(ValueError, match="needs a functional keras.Model with one image input"):
            gradcam(model, np.zeros((1, 4, 4, 3), np.float32))


@pytest.mark.parametrize(
    "kwargs, images_shape, message",
    [
        ({"method": "cam"}, (2, 8, 12, 2),
         "method must be one of 'gradcam', 'gradcam\\+\\+', 'scorecam', 'layercam', got 'cam'"),
        ({"layer": "nope"}, (2, 8, 12, 2),
         "layer 'nope' is not a layer of model .* Layers with a token .* blocks.1, blocks.1/norm1, norm"),
        ({"layer": "pool"}, (2, 8, 12, 2), "layer 'pool' outputs shape \\(None, 8\\); gradcam needs tokens"),
        ({"layer": "blocks.0/norm2"}, (2, 8, 12, 2), "the only sub-layer target is 'norm1'"),
        ({"layer": 3}, (2, 8, 12, 2), "layer must be a layer name"),
        ({"class_index": 3}, (2, 8, 12, 2), "class_index must lie in \\[0, 3\\)"),
        ({"class_index": -1}, (2, 8, 12, 2), "class_index must lie in"),
        ({"class_index": [0, 1, 2]}, (2, 8, 12, 2), "one class per image: expected 2 values"),
        ({"class_index": 0.5}, (2, 8, 12, 2), "class_index must be integers"),
        ({"class_index": True}, (2, 8, 12, 2), "class_index must be None, an int"),
        ({}, (8, 12, 2), "images must have rank 4"),
        ({}, (2, 12, 8, 2), "do not match the model's input"),
        ({}, (2, 8, 12, 3), "do not match the model's input"),
    ],
)
def test_gradcam_rejects_bad_arguments(plain_vit, kwargs, images_shape, message):
    model = plain_vit
    with pytest.raises(ValueError, match=message):
        gradcam(model, np.zeros(images_shape, np.float32), **kwargs)
