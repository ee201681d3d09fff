"""ResNet with basic blocks (ResNet-18 and relatives), the convolutional baseline of the studies.

He et al. 2016, "Deep Residual Learning for Image Recognition":
    BasicBlock  y = ReLU(BN(conv3x3(ReLU(BN(conv3x3_s(x))))) + shortcut(x)),
    shortcut(x) = x, or BN(conv1x1_s(x)) where the stride or the width changes (option B);
    stem, four stages of blocks (stride 2 and width x2 at the start of stages 2-4), global average
    pooling and a linear classifier. ResNet-18 is depths (2, 2, 2, 2), widths (64, 128, 256, 512).
Two stems: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool: the paper's) and ``"cifar"``
(3x3/1 conv, BN, ReLU, no pool: the usual CIFAR ResNet-18 of kuangliu/pytorch-cifar, which keeps the
32x32 grid for the first stage).

Names follow timm's ``resnet`` (``conv1``, ``bn1``, ``layer1.0/conv1``, ``layer2.0/downsample.0``,
``fc``) and the arithmetic follows PyTorch's: symmetric zero padding (Keras's "same" pads a
stride-2 convolution on the bottom/right only, which would shift every window by one pixel),
BatchNorm momentum 0.1 (Keras 0.9) and epsilon 1e-5, convolutions without bias, He-normal fan-out
initialisation as torchvision. So converted torchvision / timm weights give the same outputs.
"""

import math

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.models.base import ImageClassifier

STEMS = ("imagenet", "cifar")

# PyTorch's BatchNorm2d defaults: running = 0.9 running + 0.1 batch (Keras counts the other way).
_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv_init():
    """torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / (k*k*out)).

    A new one per layer: an unseeded Keras initializer fixes its seed when created, so a shared
    instance would give layers of the same shape identical kernels."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def _pad(x, amount):
    """Zero-pad height and width by ``amount`` on both sides, as PyTorch's ``padding=amount``."""
    return ops.pad(x, ((0, 0), (amount, amount), (amount, amount), (0, 0)))


@keras.saving.register_keras_serializable(package="tfvit")
class BasicBlock(keras.layers.Layer):
    """Two 3x3 conv-BN pairs plus a shortcut; sub-layers ``conv1``, ``bn1``, ``conv2``, ``bn2`` and,
    where the shape changes, ``downsample.0`` (1x1 conv) and ``downsample.1`` (BN).

    (B, H, W, C) -> (B, ceil(H / strides), ceil(W / strides), filters).
    """

    def __init__(self, filters, strides=1, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.filters = check.positive_int("filters", filters)
        if strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2, got {strides!r}.")
        self.strides = int(strides)
        policy = self.dtype_policy
        # Stride 1: "same" pads one pixel on each side, as PyTorch. Stride 2: explicit symmetric padding.
        self.conv1 = keras.layers.Conv2D(filters, 3, strides=self.strides, use_bias=False, name="conv1",
                                         padding="same" if self.strides == 1 else "valid",
                                         kernel_initializer=_conv_init(), dtype=policy)
        self.bn1 = keras.layers.BatchNormalization(dtype=policy, name="bn1", **_BN)
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv2",
                                         kernel_initializer=_conv_init(), dtype=policy)
        self.bn2 = keras.layers.BatchNormalization(dtype=policy, name="bn2", **_BN)
        self.downsample = None  # known at build: needed when the stride or the width changes

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name} expects feature maps (batch, height, width, channels), got "
                             f"{tuple(input_shape)}.")
        in_channels = input_shape[-1]
        out_shape = self.compute_output_shape(input_shape)
        b, h, w, c = input_shape
        grow = lambda s: None if s is None else s + 2
        self.conv1.build(input_shape if self.strides == 1 else (b, grow(h), grow(w), c))
        self.bn1.build(out_shape)
        self.conv2.build(out_shape)
        self.bn2.build(out_shape)
        if self.strides != 1 or in_channels != self.filters:
            policy = self.dtype_policy
            self.downsample = [
                keras.layers.Conv2D(self.filters, 1, strides=self.strides, use_bias=False,
                                    kernel_initializer=_conv_init(), dtype=policy, name="downsample.0"),
                keras.layers.BatchNormalization(dtype=policy, name="downsample.1", **_BN),
            ]
            self.downsample[0].build(input_shape)
            self.downsample[1].build(out_shape)
        self.built = True

    def call(self, x, training=None):
        shortcut = x
        if self.strides != 1:
            x = _pad(x, 1)
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        if self.downsample is not None:
            shortcut = self.downsample[1](self.downsample[0](shortcut), training=training)
        return ops.relu(y + shortcut)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        shrink = lambda s: None if s is None else (s + self.strides - 1) // self.strides
        return (b, shrink(h), shrink(w), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


def _positive_ints(name, values):
    values = tuple(values) if isinstance(values, (tuple, list)) else values
    ok = isinstance(values, tuple) and values and all(
        check.integer(v) and v > 0 for v in values)
    if not ok:
        raise ValueError(f"{name} must be a non-empty tuple of positive integers (one per stage), got {values!r}.")
    return tuple(int(v) for v in values)


@keras.saving.register_keras_serializable(package="tfvit")
class ResNet(ImageClassifier):
    """ResNet of basic blocks on (B, H, W, C) images; returns float32 logits (B, num_classes).

    ``depths`` and ``widths`` give one entry per stage (ResNet-18: (2, 2, 2, 2), (64, 128, 256, 512));
    the stem has ``widths[0]`` channels; each stage after the first halves the grid. ``stem`` is
    ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool: 224 -> 56 before the first stage) or ``"cifar"``
    (3x3/1 conv, no pool: 32 -> 32). ``num_classes=0`` drops ``fc`` and returns the pooled features.
    """

    def __init__(self, image_size=224, in_channels=3, num_classes=1000, depths=(2, 2, 2, 2),
                 widths=(64, 128, 256, 512), stem="imagenet", dtype=None, name="resnet", **kwargs):
        check.known_arguments(self, kwargs)  # Keras's functional Model would drop a misspelled option silently
        image_size = check.as_pair("image_size", image_size)
        in_channels = check.positive_int("in_channels", in_channels)
        depths = _positive_ints("depths", depths)
        widths = _positive_ints("widths", widths)
        if len(depths) != len(widths):
            raise ValueError(f"depths {depths} and widths {widths} need one entry per stage each.")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(map(repr, STEMS))}, got {stem!r}.")
        num_classes = check.num_classes(num_classes)
        config = {"image_size": image_size, "in_channels": in_channels, "num_classes": num_classes,
                  "depths": depths, "widths": widths, "stem": stem, "dtype": dtype}

        images = keras.Input((*image_size, in_channels), name="images")
        x = images
        if stem == "imagenet":
            x = keras.layers.ZeroPadding2D(3, dtype=dtype, name="conv1_pad")(x)
            x = keras.layers.Conv2D(widths[0], 7, strides=2, use_bias=False, kernel_initializer=_conv_init(),
                                    dtype=dtype, name="conv1")(x)
        else:
            x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                                    dtype=dtype, name="conv1")(x)
        x = keras.layers.BatchNormalization(dtype=dtype, name="bn1", **_BN)(x)
        x = keras.layers.ReLU(dtype=dtype, name="act1")(x)
        if stem == "imagenet":
            # PyTorch pads the max-pool with -inf; after the ReLU every value is >= 0 and each window
            # holds a real pixel, so zero padding gives the same maxima.
            x = keras.layers.ZeroPadding2D(1, dtype=dtype, name="maxpool_pad")(x)
            x = keras.layers.MaxPooling2D(3, strides=2, dtype=dtype, name="maxpool")(x)
        for stage, (depth, width) in enumerate(zip(depths, widths)):
            for index in range(depth):
                strides = 2 if stage > 0 and index == 0 else 1
                x = BasicBlock(width, strides=strides, dtype=dtype, name=f"layer{stage + 1}.{index}")(x)
        x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="global_pool")(x)
        if num_classes:
            # torch.nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both;
            # float32 logits under mixed precision: the loss and softmax need the range.
            bound = 1.0 / math.sqrt(widths[-1])
            x = keras.layers.Dense(
                num_classes, dtype="float32", name="fc",
                kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
                bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            )(x)
        self._finish(config, images, x, name, **kwargs)
        self.depths, self.widths, self.stem = depths, widths, stem
