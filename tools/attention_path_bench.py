"""Which way of computing global attention is fastest on this backend?

Times forward+backward of MultiHeadSelfAttention (the CIFAR ViT's shape by default: 128 images of
65 tokens, width 192, 3 heads) four ways, interleaved (A B C D A B C D ...) so all see the same
machine load, with and without XLA:

- matmul: tfvit's path on TensorFlow. One transpose of the fused qkv output to
  (3, B, heads, N, d), then two batched matrix products (``keras.ops.matmul``; TensorFlow's graph
  optimizer folds the transpose of k into the product);
- einsum: tfvit's path before: q, k, v split from the qkv output's channels and two einsums that
  read their (B, N, heads, d) layout directly, leaving the transposes to the einsum kernel;
- sliced: the einsum path with q, k, v taken by indexing a (B, N, 3, heads, d) reshape of the qkv
  output, as tfvit did first: the gradient of each strided slice is a zero-filled tensor of the
  full qkv size, three of them added up;
- fused: ``keras.ops.dot_product_attention`` (tfvit's path on JAX / torch).

Swin's window attention computes the same products per window: ``--batch 2048 --tokens 16 --dim 64
--heads 2`` is the CIFAR Swin's first stage (128 images x 16 windows of 4 x 4 tokens).

    python -m tools.attention_path_bench [--precision mixed_bfloat16] [--batch 128] [--dim 192]
        [--heads 3] [--tokens 65 197] [--repeats 10]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

import tfvit  # noqa: E402

NAMES = ("matmul", "einsum", "sliced", "fused")


def einsum_attention(q, k, v, head_dim):
    """softmax(q k^T / sqrt(d)) v on (B, N, heads, d) tensors by einsums, softmax in float32."""
    logits = ops.einsum("bqhd,bkhd->bhqk", q * ops.cast(head_dim ** -0.5, q.dtype), k)
    weights = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    return ops.einsum("bhqk,bkhd->bqhd", ops.cast(weights, v.dtype), v)


class EinsumAttention(tfvit.layers.MultiHeadSelfAttention):
    """tfvit's attention before the batched matrix products: channel split, einsums on (B, N, heads, d)."""

    def call(self, x, training=None):
        batch, tokens = ops.shape(x)[0], ops.shape(x)[1]
        q, k, v = (ops.reshape(t, (batch, tokens, self.num_heads, self.head_dim))
                   for t in ops.split(self.qkv(x), 3, axis=-1))
        return self.merge_heads(einsum_attention(q, k, v, self.head_dim), training=training, heads_first=False)


class SlicedQKVAttention(tfvit.layers.MultiHeadSelfAttention):
    """The einsum path with q, k, v indexed out of a (B, N, 3, heads, d) reshape."""

    def call(self, x, training=None):
        qkv = self.qkv_tokens(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        return self.merge_heads(einsum_attention(q, k, v, self.head_dim), training=training, heads_first=False)


def step_fn(layer, jit):
    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(tf.cast(layer(x), tf.float32)))
        return tape.gradient(loss, [x] + layer.trainable_weights)
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--tokens", type=int, nargs="+", default=[65, 197])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--jit", nargs="+", default=["no", "yes"], choices=["no", "yes"])
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)
    rng = np.random.default_rng(0)
    print(f"precision {args.precision}, batch {args.batch}, width {args.dim}, {args.heads} heads; "
          f"ms per forward+backward (mean of {args.repeats})")
    print(f"{'tokens':>6} {'xla':>5} " + " ".join(f"{n + ' ms':>10}" for n in NAMES)
          + "".join(f" {n + '/matmul':>14}" for n in NAMES[1:]))
    for tokens in args.tokens:
        x = tf.constant(rng.normal(size=(args.batch, tokens, args.dim)).astype("float32"))
        layers = [
            tfvit.layers.MultiHeadSelfAttention(args.heads, use_fused_attention=False),
            EinsumAttention(args.heads, use_fused_attention=False),
            SlicedQKVAttention(args.heads, use_fused_attention=False),
            tfvit.layers.MultiHeadSelfAttention(args.heads, use_fused_attention=True),
        ]
        for layer in layers:
            layer(x)
            layer.set_weights(layers[0].get_weights())
        for jit in args.jit:
            steps = [step_fn(layer, jit == "yes") for layer in layers]
            reference = np.concatenate([g.numpy().astype("float32").ravel() for g in steps[0](x)])
            for name, step in zip(NAMES[1:], steps[1:]):  # the same gradients, or the timing compares different work
                got = np.concatenate([g.numpy().astype("float32").ravel() for g in step(x)])
                # Relative to the norm of all gradients at once: in bfloat16 a bias gradient (a sum over
                # every token) can cancel to a value that rounding decides, whichever way it is computed.
                error = np.linalg.norm(got - reference) / np.linalg.norm(reference)
                if error > 0.03:
                    raise AssertionError(f"{name}: gradients differ from matmul's by {error:.3f} (relative norm)")
            totals = [0.0] * len(steps)
            for _ in range(args.repeats):
                for i, step in enumerate(steps):
                    start = time.perf_counter()
                    tf.nest.map_structure(lambda t: t.numpy(), step(x))
                    totals[i] += time.perf_counter() - start
            ms = [1e3 * t / args.repeats for t in totals]
            print(f"{tokens:>6} {jit:>5} " + " ".join(f"{m:>10.1f}" for m in ms)
                  + "".join(f" {m / ms[0]:>14.2f}" for m in ms[1:]), flush=True)


if __name__ == "__main__":
    main()
