"""The element-wise XLA clusters: what selects them, that a traced training step really compiles them
(and leaves the model's matrix products outside), and GELU with its bias and LayerNorm, clustered or
not, against float64 references (tests/layers/test_gelu.py checks GELU without a bias)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvit
from tfvit.layers import gelu, layer_norm
from tfvit.layers import xla_cluster
from tests import reference

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("setting, expected", [
    (None, {"gelu", "layer_norm"}), ("all", {"gelu", "layer_norm"}), ("none", set()), ("0", set()),
    (" gelu, ", {"gelu"}), ("layer_norm,gelu", {"gelu", "layer_norm"}),
])
def test_the_switch_selects_clusters(setting, expected, monkeypatch):
    if setting is None:
        monkeypatch.delenv(xla_cluster.SWITCH, raising=False)
    else:
        monkeypatch.setenv(xla_cluster.SWITCH, setting)
    assert xla_cluster.enabled_clusters() == expected


def test_an_unknown_cluster_name_is_refused_with_the_names(monkeypatch):
    monkeypatch.setenv(xla_cluster.SWITCH, "gelu,layernorm")
    with pytest.raises(ValueError, match=r"unknown cluster\(s\) \['layernorm'\].*'gelu', 'layer_norm'"):
        xla_cluster.enabled_clusters()


def called_functions(concrete):
    """{function name: whether its call is marked _XlaMustCompile}, over a traced graph and its library."""
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return {node.attr["f"].func.name: "_XlaMustCompile" in node.attr and node.attr["_XlaMustCompile"].b
            for node in nodes if node.op in ("PartitionedCall", "StatefulPartitionedCall")}


def traced_training_step(monkeypatch, setting):
    monkeypatch.setenv(xla_cluster.SWITCH, setting)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = tfvit.create_model("vit_cifar_patch4_32", depth=1)
    x = tf.constant(RNG.random((2, 32, 32, 3)), tf.float32)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(x, training=True), tf.float32))
        return tape.gradient(loss, model.trainable_weights)

    return step.get_concrete_function(x)


def test_a_training_step_compiles_the_clusters_forward_and_backward(monkeypatch):
    concrete = traced_training_step(monkeypatch, "all")
    compiled = sorted(name for name, xla in called_functions(concrete).items() if xla)
    for part in ("_gelu_forward", "_gelu_backward", "_normalize_", "_normalize_gradients"):
        assert any(part in name for name in compiled), (part, compiled)
    # The model's (bfloat16) products stay with TensorFlow's oneDNN kernels: GELU's clusters hold no
    # product, LayerNorm's only its float32 sums written as products.
    for function in concrete.graph.as_graph_def().library.function:
        products = [node for node in function.node_def if "MatMul" in node.op]
        if "_gelu_" in function.signature.name:
            assert not products, function.signature.name
        if "_normalize" in function.signature.name:
            assert all(node.attr["T"].type == tf.float32.as_datatype_enum for node in products)


def test_none_compiles_nothing(monkeypatch):
    calls = called_functions(traced_training_step(monkeypatch, "none"))
    assert not any(calls.values()), calls


@pytest.mark.parametrize("setting", ["all", "none"])
def test_gelu_with_bias_and_its_gradients_match_float64(setting, monkeypatch):
    monkeypatch.setenv(xla_cluster.SWITCH, setting)
    x = RNG.normal(scale=2.0, size=(7, 5, 16))
    bias = RNG.normal(size=16)
    xt, bt = tf.constant(x, tf.float32), tf.constant(bias, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([xt, bt])
        y = gelu(xt, bt)
        loss = tf.reduce_sum(y * tf.cos(y))  # a non-uniform upstream gradient
    dx, db = tape.gradient(loss, [xt, bt])
    z = x + bias
    want = reference.gelu(z)
    h = 1e-6
    slope = (reference.gelu(z + h) - reference.gelu(z - h)) / (2 * h)
    upstream = np.cos(want) - want * np.sin(want)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, upstream * slope, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, (upstream * slope).sum(axis=(0, 1)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("setting", ["all", "none"])
@pytest.mark.parametrize("batch_known", [True, False])
def test_layer_norm_and_its_gradients_match_float64_autodiff(setting, batch_known, monkeypatch):
    """The closed form (sums as products inside the cluster, or TensorFlow's) against TensorFlow's
    automatic derivative of the plain formula in float64; also with a batch size known only at run time."""
    monkeypatch.setenv(xla_cluster.SWITCH, setting)
    x = RNG.normal(loc=3.0, scale=2.0, size=(4, 7, 24))
    gamma, beta = RNG.normal(size=24), RNG.normal(size=24)
    upstream = RNG.normal(size=x.shape)

    def plain(x, gamma, beta):
        centred = x - tf.reduce_mean(x, -1, keepdims=True)
        return centred * tf.math.rsqrt(tf.reduce_mean(centred ** 2, -1, keepdims=True) + 1e-6) * gamma + beta

    def value_and_gradients(fn, dtype, signature):
        @tf.function(input_signature=signature)
        def run(x, gamma, beta):
            with tf.GradientTape() as tape:
                tape.watch([x, gamma, beta])
                y = fn(x, gamma, beta)
                loss = tf.reduce_sum(y * tf.constant(upstream, dtype))
            return (y, *tape.gradient(loss, [x, gamma, beta]))

        return [np.asarray(t) for t in run(*(tf.constant(a, dtype) for a in (x, gamma, beta)))]

    batch = 4 if batch_known else None
    got = value_and_gradients(lambda x, g, b: layer_norm(x, g, b, 1e-6), tf.float32,
                              [tf.TensorSpec((batch, 7, 24), tf.float32), tf.TensorSpec((24,), tf.float32),
                               tf.TensorSpec((24,), tf.float32)])
    want = value_and_gradients(plain, tf.float64, None)
    for g, w, name in zip(got, want, ("y", "dx", "dgamma", "dbeta")):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4, err_msg=name)
