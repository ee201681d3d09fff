import keras
import numpy as np
import pytest

from tfvit.layers import MultiHeadSelfAttention, TransformerBlock, keyed_random
from tests import reference


def test_transformer_block_matches_pre_norm_reference():
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    block = TransformerBlock(4, mlp_ratio=2.0)
    out = block(x).numpy()
    w = reference.weights_of(block)
    assert sorted({k.split("/")[0] for k in w}) == ["attn", "mlp", "norm1", "norm2"]
    for b in range(2):
        np.testing.assert_allclose(out[b], reference.vit_block(x[b].astype(np.float64), w, "", 4), atol=1e-4)


def test_call_from_norm1_is_the_block_from_its_first_layer_norm():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5, 16)).astype("float32")
    u = rng.normal(size=(8, 5, 16)).astype("float32")  # any tensor in place of norm1(x)
    block = TransformerBlock(4, mlp_ratio=2.0, drop_path=0.5)
    out = block(x).numpy()
    np.testing.assert_allclose(block.call_from_norm1(x, block.norm1(x)).numpy(), out, atol=1e-6)
    # u enters the attention only; the residual adds x (numpy reference, then the block's sub-layers).
    w = reference.weights_of(block)
    h = x + np.stack([reference.global_attention(ub.astype(np.float64), w, "attn/", 4) for ub in u])
    expected = h + reference.mlp(reference.layer_norm(h, w["norm2/gamma"], w["norm2/beta"], 1e-6), w, "mlp/")
    from_u = block.call_from_norm1(x, u).numpy()
    np.testing.assert_allclose(from_u, expected, atol=1e-4)
    h = x + block.attn(u)
    np.testing.assert_allclose(from_u, (h + block.mlp(block.norm2(h))).numpy(), atol=1e-6)
    # In training both drop paths act, with the same keyed masks in call and in call_from_norm1.
    with keyed_random.example_keyed_draws(3, 0, len(x)):
        trained = block(x, training=True).numpy()
        from_norm1 = block.call_from_norm1(x, block.norm1(x), training=True).numpy()
        h = x + block.drop_path1(block.attn(u), training=True)
        by_hand = h + block.drop_path2(block.mlp(block.norm2(h)), training=True)
        from_u = block.call_from_norm1(x, u, training=True).numpy()
    assert not np.allclose(trained, out, atol=1e-3)  # some branches were dropped
    np.testing.assert_allclose(from_norm1, trained, atol=1e-6)
    np.testing.assert_allclose(from_u, by_hand.numpy(), atol=1e-6)


@keras.saving.register_keras_serializable(package="tfvit_tests")
class ShiftTokens(keras.layers.Layer):
    """A token mixer unlike attention: each token takes its left neighbour's features."""

    def call(self, x):
        return keras.ops.roll(x, 1, axis=1)


def test_block_takes_any_attention_layer_and_serializes_it():
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype("float32")
    block = TransformerBlock(attention=ShiftTokens(name="attn"), mlp_ratio=1.0)
    out = block(x).numpy()
    w = reference.weights_of(block)
    eps = 1e-6
    h = x + np.roll(reference.layer_norm(x, w["norm1/gamma"], w["norm1/beta"], eps), 1, axis=1)
    expected = h + reference.mlp(reference.layer_norm(h, w["norm2/gamma"], w["norm2/beta"], eps), w, "mlp/")
    np.testing.assert_allclose(out, expected, atol=1e-5)
    clone = TransformerBlock.from_config(block.get_config())
    assert isinstance(clone.attn, ShiftTokens)
    clone(x)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), out, atol=1e-6)


def test_block_default_attention_config_round_trip():
    block = TransformerBlock(2, mlp_ratio=3.0, drop_path=0.1)
    clone = TransformerBlock.from_config(block.get_config())
    assert isinstance(clone.attn, MultiHeadSelfAttention) and clone.attn.num_heads == 2
    assert clone.get_config() == block.get_config()


def test_block_needs_heads_or_attention():
    with pytest.raises(ValueError, match="num_heads"):
        TransformerBlock()
    with pytest.raises(ValueError, match="keras Layer"):
        TransformerBlock(attention="global")
