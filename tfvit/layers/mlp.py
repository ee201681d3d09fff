"""The transformer's position-wise feed-forward network.

MLP(x) = drop2(fc2(drop1(act(fc1(x))))), with GELU (exact, erf form, as in ViT/timm) by default.
Vaswani et al. 2017 section 3.3; Dosovitskiy et al. 2021 eq. 3.
"""

import keras
from keras import ops

from tfvit import _validation as check
from tfvit.layers.bias import Dense
from tfvit.layers.dropout import Dropout
from tfvit.layers.gelu import gelu
from tfvit.layers.xla_cluster import cluster_enabled


def _activation(name):
    # keras.activations.gelu defaults to the tanh approximation; ViT and timm use the exact erf form,
    # and pretrained checkpoints only reproduce their logits with the exact one. tfvit's own computes
    # it with a hand-written derivative (tfvit/layers/gelu.py).
    if name == "gelu":
        return gelu
    return keras.activations.get(name)


@keras.saving.register_keras_serializable(package="tfvit")
class MLP(keras.layers.Layer):
    """Two dense layers with an activation between: D -> hidden_dim -> out_dim (default D).

    Sub-layers follow timm: ``fc1``, ``drop1``, ``fc2``, ``drop2``.
    """

    def __init__(self, hidden_dim, out_dim=None, activation="gelu", dropout=0.0, **kwargs):
        check.known_arguments(self, kwargs)
        super().__init__(**kwargs)
        self.hidden_dim = check.positive_int("hidden_dim", hidden_dim)
        self.out_dim = None if out_dim is None else check.positive_int("out_dim", out_dim)
        self.activation = activation
        self.dropout = check.rate("dropout", dropout)
        self._act = _activation(activation)
        self.fc1 = Dense(self.hidden_dim, dtype=self.dtype_policy, name="fc1")
        self.fc2 = None  # width known at build
        # Two layers (timm's drop1, drop2): one layer called twice would draw the same mask twice.
        self.drop1 = Dropout(self.dropout, dtype=self.dtype_policy, name="drop1")
        self.drop2 = Dropout(self.dropout, dtype=self.dtype_policy, name="drop2")

    def build(self, input_shape):
        out_dim = self.out_dim or input_shape[-1]
        self.fc2 = Dense(out_dim, dtype=self.dtype_policy, name="fc2")
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def call(self, x, training=None):
        if self.activation == "gelu" and cluster_enabled("gelu") and self.fc1.bias_is_separable():
            # fc1's bias added in the GELU's cluster: one fused pass instead of BiasAdd, then GELU
            dtype = self.fc1.compute_dtype
            hidden = gelu(ops.matmul(x, ops.cast(self.fc1.kernel, dtype)), ops.cast(self.fc1.bias, dtype))
        else:
            hidden = self._act(self.fc1(x))
        x = self.drop1(hidden, training=training)
        return self.drop2(self.fc2(x), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_dim or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim, out_dim=self.out_dim, activation=self.activation, dropout=self.dropout
        )
        return config
