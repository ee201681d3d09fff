"""Class activation maps of the Grad-CAM family, computed through tf-keras-vis.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", eqs. 1-2): for feature maps A^k of a layer and the class logit y^c,
    alpha_k = mean_ij dy^c / dA^k_ij,    L^c = ReLU(sum_k alpha_k A^k).
Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) weights each position's positive gradient by
    a^kc_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3),   g = dy^c / dA^k_ij.
LayerCAM (Jiang et al. 2021) keeps the gradient per position: L^c = ReLU(sum_k ReLU(g^k_ij) A^k_ij).
Score-CAM (Wang et al. 2020) needs no gradient: each map, upsampled and min-max scaled, masks the
image, and the class probability of the masked image is its weight.

A vision transformer has no convolutional feature map: its patch tokens (class token dropped) are
reshaped to the (grid_h, grid_w, D) grid. tf-keras-vis differentiates the score with respect to the
output of a layer that lies on the path to the logits, so the grid is put *on* that path: the wrapper
model runs images -> target tokens -> grid (the feature map) -> tokens again -> rest of the model.
"""

import math
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

METHODS = ("gradcam", "gradcam++", "scorecam", "layercam")

# (model -> {target layer name: _SaliencyModel}): building the wrapper adds graph nodes to the model's
# layers, so it is built once per model and target rather than on every call.
_WRAPPERS = weakref.WeakKeyDictionary()


def normalize_maps(maps):
    """Min-max scale each map of a (B, ...) batch to [0, 1]; a constant map becomes zeros."""
    maps = np.asarray(maps, dtype=np.float32)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    # A span at rounding level (relative to the map's own magnitude) carries no information: scaling it
    # up would only draw float noise.
    flat = span <= 1e-6 * np.maximum(np.abs(low), np.abs(low + span))
    return np.where(flat, 0.0, (maps - low) / np.where(flat, 1.0, span)).astype(np.float32)


def resize_maps(maps, size):
    """Bilinear resize of (B, h, w) maps to ``size`` = (H, W), pixel centres aligned.

    Cell (i, j) of an h x w grid covering an H x W image is centred on pixel ((i + 0.5) H / h - 0.5,
    ...), so its value is placed there (half-pixel centres, as ``tf.image.resize``), not at the image
    corners; edges are clamped.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == tuple(size):
        return maps
    resized = tf.image.resize(maps[..., None], size, method="bilinear", antialias=False)
    return resized.numpy()[..., 0]


def gradcam(model, images, class_index=None, method="gradcam", layer=None, upsample=True):
    """Class activation maps of ``images`` (B, H, W, C) for ``model``: float32 (B, H, W), each in [0, 1].

    Args:
        model: a functional Keras classifier. The score is the class logit, as Grad-CAM prescribes: a
            softmax (or other activation) on a final Dense, Activation or Softmax layer is bypassed.
            tfvit ViT and Swin models and CNNs with a 4D feature map work.
        class_index: None for each image's predicted class, an int for the same class on every
            image, or a sequence with one class per image.
        method: "gradcam", "gradcam++", "scorecam" or "layercam".
        layer: name of the layer whose output is the feature map (tokens are reshaped to the patch
            grid), or "blocks.i/norm1" for the first LayerNorm inside a ViT block. Default
            (``default_target_layer``): a ViT whose head reads the class token, the last block's norm1
            (as pytorch-grad-cam; the last block's own output gets no gradient at the patches, since
            only the class token reaches the head); a ViT pooling the patch tokens and a Swin, the
            final ``norm``, where Grad-CAM is exactly CAM (Zhou et al. 2016), since the logit is a
            linear function of the mean of that grid; any other model, the last layer with a 4D output.
        upsample: resize to the input's H x W (bilinear, half-pixel centres); False returns the grid.

    The maps are min-max scaled per image; a map that is zero everywhere (no positive evidence) stays
    zero. On transformers the last layers' tokens have exchanged information, so their maps can be
    coarse or miss the object: in tests/vis/test_pointing_game.py a small trained ViT's default
    Grad-CAM misses a square that its attention rollout finds, and a small Swin's default map covers
    the square's shifted windows while ``layer="patch_embed"`` points at the square itself.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    images = check_images(model, images, where="gradcam")
    saliency_model = _saliency_model(model, layer)
    logits = saliency_model.logits(images)
    classes = check_class_index(class_index, logits)

    with warnings.catch_warnings():
        # tf-keras-vis 0.8.7 imports zoom from scipy.ndimage.interpolation, deprecated since SciPy 1.8.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="tf_keras_vis")
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore(classes.tolist())
    if method == "gradcam++":
        # Grad-CAM++ uses exp(score) as the class score; the factor exp(y^c) is the same at every position
        # and cancels in the normalised map, so score with y^c - y^c (value 0, gradient dy^c) to keep exp
        # from overflowing to inf (and the map to NaN) on confident logits.
        score = _zero_valued(score)
    visualizer = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam, "layercam": Layercam}
    # expand_cam=False: the maps are resized here, with pixel centres aligned (see resize_maps), instead of
    # tf-keras-vis's scipy zoom, which pins the grid's corner cells to the image's corner pixels.
    options = {"penultimate_layer": saliency_model.feature_layer, "seek_penultimate_conv_layer": False,
                   "expand_cam": False, "normalize_cam": False}
    interactive = keras.config.is_interactive_logging_enabled()
    try:
        if method == "scorecam":
            keras.config.disable_interactive_logging()  # Score-CAM's predict() would print progress bars
        cams = visualizer[method](saliency_model.model)(score, [images], **options)
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    cams = np.asarray(cams, dtype=np.float32)
    if upsample:
        cams = resize_maps(cams, images.shape[1:3])
    return normalize_maps(cams)


def _zero_valued(score):
    def shifted(output):
        value = score(output)
        return value - tf.stop_gradient(value)

    return shifted


def check_images(model, images, where):
    """A (B, H, W, C) float batch matching the model's input, as a numpy array of the input's dtype."""
    shape = tuple(getattr(images, "shape", np.shape(images)))
    if len(shape) != 4:
        raise ValueError(
            f"{where}: images must have rank 4 (batch, height, width, channels), got shape {shape}. "
            f"A single image needs a batch axis: images[None]."
        )
    inputs = getattr(model, "inputs", None) if isinstance(model, keras.Model) else None
    if not inputs or len(inputs) != 1:
        raise ValueError(
            f"{where} needs a functional keras.Model with one image input, got {type(model).__name__}."
        )
    expected = tuple(model.inputs[0].shape[1:])
    if len(expected) != 3 or any(e is not None and e != s for e, s in zip(expected, shape[1:])):
        raise ValueError(
            f"{where}: images of shape {shape} do not match the model's input (batch, *{expected}); "
            f"resize them to the model's input size."
        )
    if shape[0] == 0:
        raise ValueError(f"{where}: images is an empty batch (shape {shape}).")
    return np.asarray(images, dtype=keras.backend.standardize_dtype(model.inputs[0].dtype))


def check_class_index(class_index, logits):
    """One class per image: None -> argmax of the logits, an int -> repeated, a sequence -> as given."""
    batch, num_classes = logits.shape
    if class_index is None:
        return np.argmax(logits, axis=-1)
    if isinstance(class_index, (bool, np.bool_)):  # ValueError for every bad argument, as all of tfvit
        raise ValueError(  # noqa: TRY004
            f"class_index must be None, an int or a sequence of ints, got {class_index!r}."
        )
    if np.ndim(class_index) == 0:
        classes = np.full(batch, class_index)
    else:
        classes = np.asarray(class_index)
        if classes.ndim != 1 or len(classes) != batch:
            raise ValueError(
                f"class_index must give one class per image: expected {batch} values, got shape "
                f"{np.shape(class_index)}."
            )
    if classes.dtype.kind not in "iu" and not (
        classes.dtype.kind == "f" and np.all(classes == np.round(classes))
    ):
        raise ValueError(f"class_index must be integers, got {class_index!r}.")
    classes = classes.astype(np.int64)
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"class_index must lie in [0, {num_classes}) for this model, got {class_index!r}.")
    return classes


class _SaliencyModel:
    """images -> logits with the target's output reshaped to a (B, h, w, C) float32 grid on the path.

    The target is a layer's output (``"norm"``, ``"layers.3"``), or ``"blocks.i/norm1"``: the first
    LayerNorm inside a TransformerBlock, whose output is no node of the model's graph; that block is
    then run in two parts around it. ``feature_layer`` is the layer whose output tf-keras-vis treats as
    the feature map.
    """

    def __init__(self, model, target_name):
        logits = _pre_activation_logits(model)
        block_name, _, sublayer = target_name.partition("/")
        if sublayer:
            block = _transformer_block(model, block_name, sublayer)
            resume_from = block.output
            target = _Norm1(block, name="saliency_norm1")(block.input)
        else:
            resume_from = target = _layer_output(model, target_name)
        prefix, grid = _token_layout(model, target_name, target.shape)
        self.feature_layer = _FeatureGrid(prefix, grid, dtype="float32", name="saliency_feature_grid")
        features = self.feature_layer(target)
        restored = _RestoreTokens(
            prefix, dtype=keras.backend.standardize_dtype(target.dtype), name="saliency_restore_tokens"
        )([target, features])
        if sublayer:
            restored = _AfterNorm1(block, name="saliency_rest_of_block")([block.input, restored])
        # The model from the target on, rebuilt by Keras from the intermediate tensor (no weights copied).
        tail = keras.Model(resume_from, logits, name=f"{model.name}_after_{block_name}")
        # A one-element input list: tf-keras-vis passes lists, and a matching structure keeps Keras quiet.
        self.model = keras.Model([model.inputs[0]], tail(restored), name=f"{model.name}_saliency")

    def logits(self, images):
        return np.asarray(self.model([images], training=False), dtype=np.float32)


def _saliency_model(model, layer):
    name = default_target_layer(model) if layer is None else layer
    if not isinstance(name, str):
        raise ValueError(f"layer must be a layer name (str) or None, got {layer!r}.")  # noqa: TRY004
    cache = _WRAPPERS.setdefault(model, {})
    if name not in cache:
        cache[name] = _SaliencyModel(model, name)
    return cache[name]


def default_target_layer(model):
    """Name of the target ``gradcam`` uses by default (see ``gradcam``)."""
    from tfvit.models import SwinTransformer, VisionTransformer

    if isinstance(model, VisionTransformer):
        config = model.get_config()
        if config["class_token"] and config["pooling"] == "token":
            return f"blocks.{config['depth'] - 1}/norm1"
        return "norm"
    if isinstance(model, SwinTransformer):
        return "norm"
    for candidate in reversed(model.layers):
        if not isinstance(candidate, keras.layers.InputLayer) and len(_output_shape(candidate)) == 4:
            return candidate.name
    raise ValueError(
        f"gradcam found no layer with a 4D (batch, height, width, channels) output in model "
        f"'{model.name}'; name the feature layer with layer=..."
    )


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer never called in this graph, or with several outputs
        return ()


def _candidates(model):
    from tfvit.layers import TransformerBlock

    names = []
    for lay in model.layers:
        if not isinstance(lay, keras.layers.InputLayer) and len(_output_shape(lay)) in (3, 4):
            names.append(lay.name)
            if isinstance(lay, TransformerBlock):
                names.append(f"{lay.name}/norm1")
    return names


def _transformer_block(model, block_name, sublayer):
    from tfvit.layers import TransformerBlock

    names = [lay.name for lay in model.layers]
    block = model.get_layer(block_name) if block_name in names else None
    if not isinstance(block, TransformerBlock) or sublayer != "norm1":
        raise ValueError(
            f"layer {block_name + '/' + sublayer!r}: the only sub-layer target is 'norm1' of a TransformerBlock "
            f"('blocks.i/norm1'). Candidates of model '{model.name}': {', '.join(_candidates(model))}."
        )
    return block


def _layer_output(model, name):
    names = [lay.name for lay in model.layers]
    if name not in names:
        raise ValueError(
            f"layer {name!r} is not a layer of model '{model.name}'. Layers with a token (3D) or "
            f"feature-map (4D) output: {', '.join(_candidates(model)) or 'none'}."
        )
    try:
        output = model.get_layer(name).output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"layer {name!r} of model '{model.name}' has no single symbolic output ({error}); gradcam needs "
            f"a functional model."
        ) from None
    if not hasattr(output, "shape") or len(output.shape) not in (3, 4):
        raise ValueError(
            f"layer {name!r} outputs shape {getattr(output, 'shape', None)}; gradcam needs tokens (batch, "
            f"tokens, dim) or a feature map (batch, height, width, channels). Candidates: "
            f"{', '.join(_candidates(model))}."
        )
    return output


def _token_layout(model, name, shape):
    """(number of prefix tokens, (h, w)) of a target output: (0, (h, w)) for a 4D map."""
    if len(shape) == 4:
        return 0, (shape[1], shape[2])
    tokens = shape[1]
    grid = getattr(model, "grid_size", None)
    if grid is not None and tokens is not None and tokens >= grid[0] * grid[1]:
        return tokens - grid[0] * grid[1], tuple(grid)
    # A token model that is not tfvit's: a square grid after at most one class token.
    for prefix in (0, 1):
        side = math.isqrt(max(tokens - prefix, 0)) if tokens is not None else 0
        if side and side * side == tokens - prefix:
            return prefix, (side, side)
    raise ValueError(
        f"layer {name!r} outputs {tokens} tokens, which do not form a patch grid (with at most one class "
        f"token); choose a layer with a 4D feature map or a token grid: {', '.join(_candidates(model))}."
    )


def _pre_activation_logits(model):
    """The model's output before a final softmax (or other) activation."""
    if len(model.outputs) != 1:
        raise ValueError(f"gradcam needs a model with one output (logits), got {len(model.outputs)}.")
    output = model.outputs[0]
    last = output._keras_history.operation
    if isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and not _is_linear(last.activation)
    ):
        return last.input
    activation = getattr(last, "activation", None)
    if activation is None or _is_linear(activation):
        return output
    if isinstance(last, keras.layers.Dense):
        return _DenseLogits(last, dtype=last.dtype_policy, name=f"{last.name}_logits")(last.input)
    raise ValueError(
        f"the output layer '{last.name}' applies the activation {activation!r}; gradcam scores classes "
        f"by their logits. Build the model with a linear output layer."
    )


def _is_linear(activation):
    return activation is keras.activations.linear or getattr(activation, "__name__", "") == "linear"


class _FeatureGrid(keras.layers.Layer):
    """(B, prefix + h*w, D) tokens -> the (B, h, w, D) patch grid in float32 (a 4D input passes through).

    float32 so that the gradients and maps tf-keras-vis computes from it keep float32 precision under
    a mixed policy (tf-keras-vis only recasts float16, not bfloat16).
    """

    def __init__(self, num_prefix_tokens, grid_size, **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = tuple(grid_size)

    def call(self, x):
        x = ops.cast(x, "float32")
        if len(x.shape) == 4:
            return x
        return ops.reshape(x[:, self.num_prefix_tokens:], (-1, *self.grid_size, x.shape[-1]))

    def get_config(self):
        return {**super().get_config(), "num_prefix_tokens": self.num_prefix_tokens, "grid_size": self.grid_size}


class _RestoreTokens(keras.layers.Layer):
    """Inverse of _FeatureGrid: [original tokens, grid] -> the prefix tokens followed by the grid's tokens."""

    def __init__(self, num_prefix_tokens, **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, inputs):
        original, grid = inputs
        grid = ops.cast(grid, original.dtype)
        if len(original.shape) == 4:
            return grid
        tokens = ops.reshape(grid, (-1, grid.shape[1] * grid.shape[2], grid.shape[3]))
        return ops.concatenate([original[:, :self.num_prefix_tokens], tokens], axis=1)

    def get_config(self):
        return {**super().get_config(), "num_prefix_tokens": self.num_prefix_tokens}


class _Norm1(keras.layers.Layer):
    """The ``norm1`` LayerNorm of a TransformerBlock, applied to the block's input."""

    def __init__(self, block, **kwargs):
        super().__init__(dtype=block.dtype_policy, **kwargs)
        self.block = block

    def call(self, x):
        return self.block.norm1(x)


class _AfterNorm1(keras.layers.Layer):
    """The rest of a pre-norm TransformerBlock from its norm1 output u: x + attn(u), then the MLP residual
    (the same computation as ``TransformerBlock.call``; drop-path is the identity at inference)."""

    def __init__(self, block, **kwargs):
        super().__init__(dtype=block.dtype_policy, **kwargs)
        self.block = block

    def call(self, inputs):
        x, normed = inputs
        block = self.block
        x = x + block.drop_path1(block.attn(normed))
        return x + block.drop_path2(block.mlp(block.norm2(x)))


class _DenseLogits(keras.layers.Layer):
    """x W + b of an existing Dense layer, without its activation (shares its weights)."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        out = ops.matmul(ops.cast(x, self.compute_dtype), ops.cast(self.dense.kernel, self.compute_dtype))
        if self.dense.bias is not None:
            out = out + ops.cast(self.dense.bias, self.compute_dtype)
        return out
