"""Bias addition whose gradient is summed with a float32 accumulator, and the Dense and Conv2D that use it.

For y = x + b over tokens, dL/db = sum over every axis but the last of dL/dy. Keras's Dense and Conv
layers add their bias with ``tf.nn.bias_add`` on TensorFlow, whose gradient kernel (BiasAddGrad) on the
CPU accumulates bfloat16 in bfloat16: bfloat16 keeps 8 significant bits, so once the running sum reaches
256 adding a 1 rounds away, and the bias gradient of 8320 tokens (a CIFAR ViT batch of 128 x 65) that
should be 8320 comes out as 256 (tests/layers/test_bias.py; TensorFlow issue #86378 reports the op's
CPU results disagreeing with the GPU's, and PyTorch had the same bug, #68048). Under mixed_bfloat16 the
bias gradients of Keras's Dense and Conv layers are far off for any realistic batch (docs/accumulation.md,
"bfloat16 bias gradients on TensorFlow", gives the errors that ``python -m tools.bias_gradient_check``
measures over the CIFAR ViT's biases). float32 and float16 accumulate in float32 already, and so does
XLA for bfloat16 (TensorFlow with jit_compile, and JAX).

``bias_add`` keeps the forward pass (``keras.ops.add``, the same BiasAdd kernel) and replaces only the
gradient, with ``keras.ops.sum`` of the upstream gradient, whose TensorFlow kernel accumulates bfloat16
in float32 (the sum is then rounded once to bfloat16, as any bfloat16 gradient is). One reduction
replaces another, so it adds no work (docs/performance.md measures a Dense layer's
forward+backward against Keras's with ``python -m tools.elementwise_bench --part ops``).
``Dense`` and ``Conv2D`` are Keras's layers with the same arguments, weights and names, using it when it
applies: TensorFlow, a bfloat16 compute dtype, and ``closed_form_gradients()``
(``TFVIT_CLOSED_FORM_GRADIENTS=0`` turns it off).
"""

import inspect

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers.gelu import closed_form_gradients


def float32_summed_bias_gradient_applies(compute_dtype):
    """Whether ``bias_add``'s gradient is needed: TensorFlow, bfloat16, the switch on."""
    return keras.backend.standardize_dtype(compute_dtype) == "bfloat16" and closed_form_gradients()


@ops.custom_gradient
def bias_add(x, bias):
    """x + bias, the (C,) bias broadcast along the last axis of x; its gradient summed in float32."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        token_axes = tuple(range(len(upstream.shape) - 1))
        return upstream, ops.cast(ops.sum(upstream, axis=token_axes), bias.dtype)

    return ops.add(x, bias), grad


@keras.saving.register_keras_serializable(package="tfvit")
class Dense(keras.layers.Dense):
    """``keras.layers.Dense`` whose bias gradient is summed in float32 under bfloat16 (see module)."""

    def __init__(self, *args, **kwargs):
        check.known_arguments(self, kwargs)  # a TypeError with the closest name, as every tfvit layer
        super().__init__(*args, **kwargs)

    __init__.__signature__ = inspect.signature(keras.layers.Dense.__init__)  # Keras's arguments, for help()

    def build(self, input_shape):
        # Keras's Dense.build enables LoRA with enable_lora(self.lora_rank), which resets lora_alpha to
        # the rank: a constructor's lora_alpha would be lost from the scaling and from get_config.
        lora_alpha = self.lora_alpha
        super().build(input_shape)
        if self.lora_rank:
            self.lora_alpha = lora_alpha

    def bias_is_separable(self):
        """Whether ``call`` is the product ``inputs @ kernel`` and then the bias, nothing else (a bias, no
        activation, LoRA or quantization): a caller may then add the bias itself, fused with what follows
        (``tfvit.layers.mlp``'s bias + GELU)."""
        return (self.bias is not None and not self.quantization_mode and not self.lora_enabled
                and self.activation in (None, keras.activations.linear))

    def call(self, inputs, training=None):
        if self.bias is None or self.quantization_mode or not float32_summed_bias_gradient_applies(
                self.compute_dtype):
            return super().call(inputs, training=training)
        # cast, not convert_to_tensor: the custom gradient must see a tensor, not the variable
        x = bias_add(ops.matmul(inputs, self.kernel), ops.cast(self.bias, self.compute_dtype))
        return x if self.activation is None else self.activation(x)


@keras.saving.register_keras_serializable(package="tfvit")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose bias gradient is summed in float32 under bfloat16 (see module)."""

    def __init__(self, *args, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(*args, **kwargs)

    __init__.__signature__ = inspect.signature(keras.layers.Conv2D.__init__)

    def convolution_op(self, inputs, kernel):
        if self.data_format != "channels_first":
            return super().convolution_op(inputs, kernel)
        # TensorFlow's CPU convolution takes NCHW only through oneDNN, which it turns on only for CPUs with
        # AVX-512 VNNI / BF16 or AMX (elsewhere: "Conv2D op currently only supports the NHWC tensor format on the
        # CPU"). The same convolution between two transposes runs on every CPU and backend.
        outputs = ops.conv(ops.transpose(inputs, (0, 2, 3, 1)), kernel, strides=self.strides, padding=self.padding,
                           dilation_rate=self.dilation_rate, data_format="channels_last")
        return ops.transpose(outputs, (0, 3, 1, 2))

    def call(self, inputs):
        if not self.use_bias or self.data_format != "channels_last" or not float32_summed_bias_gradient_applies(
                self.compute_dtype):
            return super().call(inputs)
        outputs = bias_add(self.convolution_op(inputs, self.kernel), ops.cast(self.bias, self.compute_dtype))
        return outputs if self.activation is None else self.activation(outputs)
