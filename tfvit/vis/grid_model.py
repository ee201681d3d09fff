"""The wrapper model that puts a target's output, as a feature grid, on the path to the logits.

tf-keras-vis differentiates the class score with respect to the output of a layer of the model it is
given, and reads that output as the (B, h, w, C) feature map A^k of Grad-CAM. A vision transformer
has no such layer: its target is a token sequence (B, prefix + h*w, D), or for ``"blocks.i/norm1"``
a tensor inside a block. So the wrapper runs
    images -> target -> grid (``_FeatureGrid``, the feature map) -> tokens again (``_RestoreTokens``)
    -> the rest of the model -> logits,
with the grid a node on the only path from the target to the logits, so that dy^c / dA^k is the
gradient with respect to the target itself. No weights are copied: the layers of the rest of the
model are called again on the restored tokens. For ``"blocks.i/norm1"`` the block is split at its
first LayerNorm (``_Norm1``, then ``TransformerBlock.call_from_norm1`` in ``_AfterNorm1``). The
score is the class logit, as Grad-CAM prescribes: a final softmax (or other activation) is bypassed.
"""

import weakref

import keras
import numpy as np
from keras import ops

from tfvit.vis.targets import default_target_layer, layer_output, token_layout, transformer_block

# (model -> {target layer name: SaliencyModel}): building the wrapper adds graph nodes to the model's
# layers, so it is built once per model and target rather than on every call.
_WRAPPERS = weakref.WeakKeyDictionary()


def saliency_model(model, layer):
    """The (cached) ``SaliencyModel`` of ``model`` for target ``layer`` (None: ``default_target_layer``)."""
    name = default_target_layer(model) if layer is None else layer
    if not isinstance(name, str):
        raise ValueError(f"layer must be a layer name (str) or None, got {layer!r}.")  # noqa: TRY004
    cache = _WRAPPERS.setdefault(model, {})
    if name not in cache:
        cache[name] = SaliencyModel(model, name)
    return cache[name]


class SaliencyModel:
    """images -> logits with the target's output reshaped to a (B, h, w, C) float32 grid on the path.

    The target is a layer's output (``"norm"``, ``"layers.3"``), or ``"blocks.i/norm1"``: the first
    LayerNorm inside a TransformerBlock, whose output is no node of the model's graph; that block is
    then run in two parts around it. ``feature_layer`` is the layer whose output tf-keras-vis treats as
    the feature map.
    """

    def __init__(self, model, target_name):
        logits = pre_activation_logits(model)
        block_name, _, sublayer = target_name.partition("/")
        if sublayer:
            block = transformer_block(model, block_name, sublayer)
            resume_from = block.output
            target = _Norm1(block, name="saliency_norm1")(block.input)
        else:
            resume_from = target = layer_output(model, target_name)
        prefix, grid = token_layout(model, target_name, target.shape)
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


def pre_activation_logits(model):
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
    """The rest of a TransformerBlock from [its input x, its norm1 output]: ``block.call_from_norm1``."""

    def __init__(self, block, **kwargs):
        super().__init__(dtype=block.dtype_policy, **kwargs)
        self.block = block

    def call(self, inputs, training=None):
        x, normed = inputs
        return self.block.call_from_norm1(x, normed, training=training)


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
