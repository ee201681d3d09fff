"""Parameters and multiply-accumulates (MACs) of a model, counted from its traced graph.

MACs follow the convention of the papers' FLOP figures (fvcore, the Swin and DeiT tables): one per
multiply-add of every matrix product and convolution, including the attention products QK^T and AV;
element-wise work (softmax, normalisation, activations, additions) is not counted. The count reads
the shapes of the MatMul / BatchMatMul / Einsum / Conv2D operations of the model's inference graph at
batch size 1, so it holds for any Keras model, tfvit's or a user's (TensorFlow backend).
"""

import dataclasses
import math

import keras
import numpy as np

from tfvit.layers import xla_cluster


@dataclasses.dataclass(frozen=True)
class ModelStats:
    params: int            # all weights (trainable + non-trainable)
    trainable_params: int
    macs: int              # per image (None off the TensorFlow backend)
    input_shape: tuple     # (H, W, C)


def _dims(tensor):
    shape = tensor.shape
    if shape.rank is None or any(d is None for d in shape.as_list()):
        raise ValueError(f"cannot count MACs of {tensor.name}: shape {shape} is not static.")
    return shape.as_list()


def _einsum_macs(op):
    """prod(output shape) x prod(sizes of the contracted labels): one MAC per term of each sum."""
    equation = op.get_attr("equation").decode().replace(" ", "")
    inputs, output = equation.split("->")
    contracted = {}
    for labels, tensor in zip(inputs.split(","), op.inputs):
        dims = _dims(tensor)
        labels = labels.replace("...", "")
        # Explicit labels name the trailing axes; an ellipsis stands for the leading ones.
        for label, size in zip(labels, dims[len(dims) - len(labels):]):
            if label not in output:
                contracted[label] = max(contracted.get(label, 1), size)
    return math.prod(_dims(op.outputs[0])) * math.prod(contracted.values())


def _op_macs(op):
    kind = op.type
    if kind == "MatMul":
        a, b = _dims(op.inputs[0]), _dims(op.inputs[1])
        m = a[1] if op.get_attr("transpose_a") else a[0]
        k = a[0] if op.get_attr("transpose_a") else a[1]
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return m * k * n
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _dims(op.inputs[0])
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return math.prod(_dims(op.outputs[0])) * k
    if kind in ("Conv2D", "DepthwiseConv2dNative"):
        kh, kw, cin, _ = _dims(op.inputs[1])
        per_output = kh * kw * (1 if kind == "DepthwiseConv2dNative" else cin)
        return math.prod(_dims(op.outputs[0])) * per_output
    if kind == "Einsum":
        return _einsum_macs(op)
    return 0


def _unwrapped(model):
    """The model that a wrapper without an input of its own trains (``GradientAccumulationModel(model).model``):
    its weights and its forward pass are the wrapped model's, so its stats are too."""
    while not getattr(model, "inputs", None) and isinstance(getattr(model, "model", None), keras.Model):
        model = model.model
    return model


def _input_shape(model, input_shape, where):
    if input_shape:
        return tuple(input_shape)
    if not getattr(model, "inputs", None):
        raise ValueError(
            f"{where}: model {model.name!r} ({type(model).__name__}) has no input of its own (a subclassed model); "
            f"pass input_shape=(height, width, channels)."
        )
    return tuple(model.input_shape[1:])


def count_macs(model, input_shape=None):
    """MACs of one forward pass on a single image of ``input_shape`` (default: the model's input)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"count_macs traces a TensorFlow graph; the Keras backend is {keras.backend.backend()!r}.")
    import tensorflow as tf  # graph tracing is TensorFlow-specific; the layers themselves are not

    model = _unwrapped(model)
    input_shape = _input_shape(model, input_shape, "count_macs")
    spec = tf.TensorSpec((1, *input_shape), tf.float32)
    forward = tf.autograph.experimental.do_not_convert(lambda x: model(x, training=False))
    with xla_cluster.all_off():  # the clusters' sums written as products are no multiply-adds of the model
        graph = tf.function(forward).get_concrete_function(spec).graph
    return int(_graph_macs(graph))


_FUNCTION_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _graph_macs(graph):
    """MACs of a graph's ops, entering the graph functions it calls (tfvit's XLA clusters are such calls)."""
    loops = {op.type for op in graph.get_operations()} & {"While", "StatelessWhile"}
    if loops:  # a loop body runs a number of times this count cannot know
        raise ValueError(f"cannot count MACs through loops ({sorted(loops)}).")
    total = 0
    for op in graph.get_operations():
        if op.type in _FUNCTION_CALLS:
            total += _graph_macs(graph._get_function(op.get_attr("f").name).graph)
        else:
            total += _op_macs(op)
    return total


def stats(model, input_shape=None):
    """``ModelStats`` of a built Keras model: parameter counts and MACs per image (``count_macs``; None under
    another Keras backend than TensorFlow, whose graph it counts). A wrapper such as
    ``GradientAccumulationModel`` reports the model it wraps."""
    model = _unwrapped(model)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    shape = _input_shape(model, input_shape, "stats")
    macs = count_macs(model, shape) if keras.backend.backend() == "tensorflow" else None
    return ModelStats(params=total, trainable_params=trainable, macs=macs, input_shape=shape)
