import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvit.models.resnet import ResNet
from tfvit.models.stats import count_macs, stats

TINY = {"depths": (2, 2, 1, 1), "widths": (4, 8, 8, 8), "num_classes": 5}  # identity and projection shortcuts
RESNET18 = {"depths": (2, 2, 2, 2), "widths": (64, 128, 256, 512)}


# --- brute-force numpy ResNet (PyTorch semantics: symmetric padding, max-pool padded with -inf) ---

def conv(x, kernel, stride, pad):
    """x (H, W, Cin), kernel (kh, kw, Cin, Cout): out[p, q] = sum_ij x_pad[s p + i, s q + j] @ kernel[i, j]."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    ho, wo = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.zeros((ho, wo, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] @ kernel[i, j]
    return out


def max_pool(x, size=3, stride=2, pad=1):
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    ho, wo = (x.shape[0] - size) // stride + 1, (x.shape[1] - size) // stride + 1
    out = np.full((ho, wo, x.shape[2]), -np.inf)
    for i in range(size):
        for j in range(size):
            out = np.maximum(out, x[i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride])
    return out


def batch_norm(x, w, name):
    """Inference mode: (x - moving mean) / sqrt(moving var + 1e-5) * gamma + beta."""
    return ((x - w[f"{name}/moving_mean"]) / np.sqrt(w[f"{name}/moving_variance"] + 1e-5) * w[f"{name}/gamma"]
            + w[f"{name}/beta"])


def relu(x):
    return np.maximum(x, 0.0)


def reference_resnet(image, w, depths, stem):
    if stem == "imagenet":
        x = relu(batch_norm(conv(image, w["conv1/kernel"], 2, 3), w, "bn1"))
        x = max_pool(x)
    else:
        x = relu(batch_norm(conv(image, w["conv1/kernel"], 1, 1), w, "bn1"))
    for stage, depth in enumerate(depths):
        for index in range(depth):
            name = f"layer{stage + 1}.{index}"
            stride = 2 if stage > 0 and index == 0 else 1
            y = relu(batch_norm(conv(x, w[f"{name}/conv1/kernel"], stride, 1), w, f"{name}/bn1"))
            y = batch_norm(conv(y, w[f"{name}/conv2/kernel"], 1, 1), w, f"{name}/bn2")
            if f"{name}/downsample.0/kernel" in w:
                x = batch_norm(conv(x, w[f"{name}/downsample.0/kernel"], stride, 0), w, f"{name}/downsample.1")
            x = relu(y + x)
    return x.mean((0, 1)) @ w["fc/kernel"] + w["fc/bias"]


def randomise_batch_norm(model, seed=0):
    """Non-trivial BN parameters and moving statistics, so that inference mode is really exercised."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        name = v.path.rsplit("/", 1)[-1]
        values = {"gamma": lambda s: rng.uniform(0.5, 1.5, s), "beta": lambda s: rng.normal(0, 0.3, s),
                  "moving_mean": lambda s: rng.normal(0, 0.5, s), "moving_variance": lambda s: rng.uniform(0.5, 2, s)}
        if name in values:
            v.assign(values[name](v.shape).astype("float32"))


def weights(model):
    return {v.path: np.asarray(v.numpy(), np.float64) for v in model.weights}


@pytest.mark.parametrize("stem, size, channels", [("cifar", 16, 3), ("imagenet", 16, 3), ("cifar", 13, 1)])
def test_forward_matches_numpy_reference(stem, size, channels):
    model = ResNet(image_size=size, in_channels=channels, stem=stem, **TINY)
    randomise_batch_norm(model)
    x = np.random.default_rng(1).normal(size=(2, size, size, channels)).astype("float32")
    logits = model(x, training=False).numpy()
    w = weights(model)
    for b in range(2):
        np.testing.assert_allclose(logits[b], reference_resnet(x[b].astype(np.float64), w, TINY["depths"], stem),
                                   atol=1e-4)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_matches_a_torch_resnet_built_by_hand(stem):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            widths, depths = TINY["widths"], TINY["depths"]
            self.conv1 = (nn.Conv2d(3, widths[0], 7, 2, 3, bias=False) if stem == "imagenet"
                          else nn.Conv2d(3, widths[0], 3, 1, 1, bias=False))
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
            cin = widths[0]
            for s, (depth, width) in enumerate(zip(depths, widths)):
                blocks = [Block(cin if i == 0 else width, width, 2 if s > 0 and i == 0 else 1) for i in range(depth)]
                setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
                cin = width
            self.fc = nn.Linear(widths[-1], TINY["num_classes"])

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for s in range(len(TINY["depths"])):
                x = getattr(self, f"layer{s + 1}")(x)
            return self.fc(x.mean((2, 3)))

    model = ResNet(image_size=16, stem=stem, **TINY)
    randomise_batch_norm(model)
    net = Net().double()
    state = net.state_dict()
    renames = {"kernel": "weight", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
               "moving_variance": "running_var", "bias": "bias"}
    for path, value in weights(model).items():
        module, leaf = path.rsplit("/", 1)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        elif value.ndim == 2:
            value = value.T
        state[f"{module.replace('/', '.')}.{renames[leaf]}"] = torch.from_numpy(value.copy())
    assert set(state) - {k for k in state if k.endswith("num_batches_tracked")} == {
        f"{p.rsplit('/', 1)[0].replace('/', '.')}.{renames[p.rsplit('/', 1)[1]]}" for p in weights(model)}
    net.load_state_dict(state)

    x = np.random.default_rng(2).normal(size=(3, 16, 16, 3))
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(x.astype("float32"), training=False).numpy(), net(tx).numpy(), atol=1e-4)
        net.train()  # batch statistics (both biased for normalising) and running-mean updates
        expected = net(tx).numpy()
    np.testing.assert_allclose(model(x.astype("float32"), training=True).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(model.get_layer("layer2.0").bn1.moving_mean.numpy(),
                               net.layer2[0].bn1.running_mean.numpy(), atol=1e-5)


@pytest.mark.parametrize("stem, image_size, num_classes, published", [
    ("imagenet", 224, 1000, 11_689_512),  # torchvision resnet18
    ("cifar", 32, 10, 11_173_962),         # kuangliu/pytorch-cifar ResNet18
])
def test_parameter_counts_match_the_published_figures(stem, image_size, num_classes, published):
    model = ResNet(image_size=image_size, num_classes=num_classes, stem=stem, **RESNET18)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == published
    # Plus two moving statistics per BN channel: stem, two per block, one per projection shortcut.
    bn_channels = 64 + sum(2 * 2 * w for w in RESNET18["widths"]) + 128 + 256 + 512
    assert sum(int(np.prod(w.shape)) for w in model.weights) == published + 2 * bn_channels


def hand_counted_macs(stem, size, num_classes):
    """sum over convolutions of out_h * out_w * out_c * k * k * in_c, plus the fc layer."""
    total, grid = 0, size
    if stem == "imagenet":
        grid = (grid + 6 - 7) // 2 + 1
        total += grid * grid * 64 * 7 * 7 * 3
        grid = (grid + 2 - 3) // 2 + 1
    else:
        total += grid * grid * 64 * 3 * 3 * 3
    cin = 64
    for stage, width in enumerate(RESNET18["widths"]):
        for index in range(2):
            stride = 2 if stage > 0 and index == 0 else 1
            grid = (grid + 2 - 3) // stride + 1
            total += grid * grid * width * 9 * cin + grid * grid * width * 9 * width
            if stride == 2:
                total += grid * grid * width * cin
            cin = width
    return total + 512 * num_classes


@pytest.mark.parametrize("stem, size, num_classes, published", [
    ("imagenet", 224, 1000, 1.82e9),  # He et al. 2016 Table 1 (1.8e9), fvcore 1.82 G
    ("cifar", 32, 100, 558e6),        # ../shared/seeds/001: ResNet-18 on CIFAR-100, "558 M FLOPs"
])
def test_macs_match_the_architecture_and_the_published_figures(stem, size, num_classes, published):
    model = ResNet(image_size=size, num_classes=num_classes, stem=stem, **RESNET18)
    macs = stats(model).macs
    assert macs == count_macs(model) == hand_counted_macs(stem, size, num_classes)
    assert abs(macs - published) / published < 0.01


def test_initialisation_follows_torchvision():
    model = ResNet(image_size=32, num_classes=10, stem="cifar", **RESNET18)
    kernel = model.get_layer("layer4.1").conv2.kernel.numpy()  # 3x3x512x512: 2.4M draws
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 512)), rtol=0.01)  # He normal, fan_out
    assert abs(kernel.mean()) < 1e-4
    bound = 1 / np.sqrt(512)  # torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for w in (model.get_layer("fc").kernel.numpy(), model.get_layer("fc").bias.numpy()):
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    kernels = [w.numpy() for w in model.weights if w.path.endswith("kernel") and w.shape == (3, 3, 512, 512)]
    assert len(kernels) == 3 and not any(np.array_equal(a, b) for i, a in enumerate(kernels) for b in kernels[:i])
    bn = model.get_layer("bn1")
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5  # torch's momentum 0.1, eps 1e-5
    assert all("bias" not in w.path for w in model.weights if w.path.startswith(("conv1", "layer")))


def test_layer_names_follow_timm():
    model = ResNet(image_size=16, stem="imagenet", **TINY)
    paths = {w.path for w in model.weights}
    for expected in ("conv1/kernel", "bn1/gamma", "bn1/moving_variance", "layer1.0/conv1/kernel", "layer1.1/bn2/beta",
                     "layer2.0/downsample.0/kernel", "layer2.0/downsample.1/moving_mean", "layer4.0/conv2/kernel",
                     "fc/kernel", "fc/bias"):
        assert expected in paths
    assert not any(p.startswith(("layer1.0/downsample", "layer2.1/downsample")) for p in paths)
    assert [layer.name for layer in model.layers if layer.name.startswith("layer")] == [
        "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer4.0"]


def test_training_mode_updates_batch_norm_statistics():
    model = ResNet(image_size=8, stem="cifar", **TINY)
    randomise_batch_norm(model)
    bn = model.get_layer("bn1")
    mean0, var0 = bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()
    x = np.random.default_rng(3).normal(size=(4, 8, 8, 3)).astype("float32")
    model(x, training=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mean0)  # inference leaves them alone
    model(x, training=True)
    kernel = model.get_layer("conv1").kernel.numpy()
    features = np.stack([conv(x[b].astype(np.float64), kernel, 1, 1) for b in range(4)])
    # running = 0.9 running + 0.1 batch (torch's momentum 0.1); Keras uses the biased batch variance.
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * mean0 + 0.1 * features.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 * var0 + 0.1 * features.var((0, 1, 2)), rtol=1e-4)


def test_gradients_reach_every_trainable_weight():
    model = ResNet(image_size=16, stem="imagenet", **TINY)
    x, y = np.random.default_rng(4).normal(size=(4, 16, 16, 3)).astype("float32"), np.array([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), from_logits=True)
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == len([w for w in model.weights if "moving" not in w.path])
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None or not np.any(g.numpy())]
    assert not missing


def test_keras_file_round_trip(tmp_path):
    model = ResNet(image_size=16, stem="imagenet", **TINY)
    randomise_batch_norm(model)
    x = np.random.default_rng(5).normal(size=(2, 16, 16, 3)).astype("float32")
    model.save(tmp_path / "resnet.keras")
    loaded = keras.saving.load_model(tmp_path / "resnet.keras")
    assert type(loaded) is ResNet
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    clone = ResNet.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert model.get_config()["stem"] == "imagenet" and model.get_config()["widths"] == TINY["widths"]


def test_mixed_bfloat16_computes_in_bfloat16_with_float32_logits():
    model = ResNet(image_size=16, stem="cifar", **TINY)
    randomise_batch_norm(model)
    x = np.random.default_rng(6).normal(size=(2, 16, 16, 3)).astype("float32")
    expected = model(x).numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = ResNet(image_size=16, stem="cifar", **TINY)
    mixed.set_weights(model.get_weights())
    out = mixed(x)
    assert out.dtype == "float32"
    assert mixed.get_layer("layer1.0").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in mixed.weights)
    np.testing.assert_allclose(out.numpy(), expected, atol=0.05 * max(1.0, np.abs(expected).max()))
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(np.array([0, 1]), mixed(x, training=True), from_logits=True)
    grads = tape.gradient(loss, mixed.trainable_weights)
    assert all(g.dtype == "float32" and np.isfinite(g.numpy()).all() for g in grads)


@pytest.mark.parametrize("stem, size, channels, grid", [
    ("cifar", 32, 3, 4), ("cifar", 28, 1, 4), ("imagenet", 224, 3, 7), ("imagenet", 28, 1, 1)])
def test_resolutions_channels_and_feature_output(stem, size, channels, grid):
    model = ResNet(image_size=size, in_channels=channels, stem=stem, **{**TINY, "depths": (1, 1, 1, 1)})
    assert model(np.zeros((2, size, size, channels), "float32")).shape == (2, 5)
    assert model.get_layer("layer4.0").output.shape == (None, grid, grid, 8)
    features = ResNet(image_size=size, in_channels=channels, stem=stem, **{**TINY, "num_classes": 0})
    assert features(np.zeros((1, size, size, channels), "float32")).shape == (1, 8)


@pytest.mark.parametrize("kwargs, message", [
    ({"stem": "tiny"}, "stem must be one of 'imagenet', 'cifar', got 'tiny'"),
    ({"depths": (2, 2), "widths": (4, 8, 8)}, "one entry per stage"),
    ({"depths": (), "widths": ()}, "depths must be a non-empty tuple"),
    ({"widths": (4, 0, 8, 8)}, "widths must be a non-empty tuple of positive integers"),
    ({"depths": (2, 2.5, 1, 1)}, "depths"),
    ({"num_classes": -1}, "num_classes must be an integer >= 0"),
    ({"image_size": 0}, "image_size"),
    ({"in_channels": 0}, "in_channels"),
])
def test_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**{"image_size": 16, **TINY, **kwargs})


@pytest.mark.parametrize("shape, message", [
    ((2, 16, 16), "rank 4"), ((2, 16, 16, 1), "expects 3 input channel"), ((2, 32, 32, 3), "built for images of size")])
def test_rejects_bad_input(shape, message):
    model = ResNet(image_size=16, **TINY)
    with pytest.raises(ValueError, match=message):
        model(np.zeros(shape, "float32"))
