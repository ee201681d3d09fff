import numpy as np
import pytest

from tfvit.layers import MultiHeadSelfAttention, exact_attention
from tests import reference


def test_exact_attention_matches_softmax_formula_with_bias():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 3, 5, 4)).astype("float32") for _ in range(3))
    bias = rng.normal(size=(3, 5, 5)).astype("float32")
    out, weights = exact_attention(q, k, v, bias=bias, return_weights=True)
    for b in range(2):
        for h in range(3):
            a = reference.softmax(q[b, h] @ k[b, h].T / 2.0 + bias[h])
            np.testing.assert_allclose(weights.numpy()[b, h], a, atol=1e-6)
            np.testing.assert_allclose(out.numpy()[b, h], a @ v[b, h], atol=1e-5)


def test_exact_attention_broadcasts_leading_axes_against_the_bias():
    """Window attention's layout: (B, nW, heads, N, d) against a (nW, heads, N, N) bias."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(2, 4, 3, 5, 4)).astype("float32") for _ in range(3))
    bias = rng.normal(size=(4, 3, 5, 5)).astype("float32")
    out, weights = exact_attention(q, k, v, bias=bias, return_weights=True)
    for b in range(2):
        for w in range(4):
            for h in range(3):
                a = reference.softmax(q[b, w, h] @ k[b, w, h].T / 2.0 + bias[w, h])
                np.testing.assert_allclose(weights.numpy()[b, w, h], a, atol=1e-6)
                np.testing.assert_allclose(out.numpy()[b, w, h], a @ v[b, w, h], atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_multi_head_self_attention_matches_per_head_reference(fused):
    x = np.random.default_rng(1).normal(size=(2, 7, 12)).astype("float32")
    layer = MultiHeadSelfAttention(3, use_fused_attention=fused)
    out = layer(x).numpy()
    w = reference.weights_of(layer)
    for b in range(2):
        np.testing.assert_allclose(out[b], reference.global_attention(x[b].astype(np.float64), w, "", 3), atol=1e-5)


def test_attention_scores_are_returned_as_float32_distributions():
    x = np.random.default_rng(2).normal(size=(2, 6, 8)).astype("float32")
    layer = MultiHeadSelfAttention(2)
    out, scores = layer(x, return_attention_scores=True)
    assert out.shape == (2, 6, 8) and scores.shape == (2, 2, 6, 6)
    assert scores.dtype == "float32"
    np.testing.assert_allclose(scores.numpy().sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), layer(x).numpy(), atol=1e-6)


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="num_heads=5 does not divide dim=12"):
        MultiHeadSelfAttention(5)(np.zeros((1, 4, 12), "float32"))
    with pytest.raises(ValueError, match="rank|tokens"):
        MultiHeadSelfAttention(2)(np.zeros((1, 4, 4, 12), "float32"))
