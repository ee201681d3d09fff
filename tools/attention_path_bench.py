"""Which way of computing global attention is fastest on this backend?

Times forward+backward of MultiHeadSelfAttention (the CIFAR ViT's shape by default: 128 images of
65 tokens, width 192, 3 heads) three ways, interleaved (A B C A B C ...) so all see the same machine
load, with and without XLA:

- explicit: tfvit's path on TensorFlow. q, k, v come from a split of the fused qkv output's
  channels, and the attention einsums read their (B, N, heads, d) layout directly;
- fused: ``keras.ops.dot_product_attention`` on the same q, k, v (tfvit's path on JAX / torch);
- sliced: the explicit path with q, k, v taken by indexing a (B, N, 3, heads, d) reshape of the qkv
  output, as tfvit did before: the gradient of each strided slice is a zero-filled tensor of the
  full qkv size, three of them added up.

    python tools/attention_path_bench.py [--precision mixed_bfloat16] [--batch 128] [--dim 192]
        [--heads 3] [--tokens 65 197] [--repeats 10]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

import tfvit  # noqa: E402
from tfvit.layers.attention import exact_attention  # noqa: E402


class SlicedQKVAttention(tfvit.layers.MultiHeadSelfAttention):
    """The explicit path with q, k, v indexed out of a (B, N, 3, heads, d) reshape."""

    def call(self, x, training=None):
        batch, tokens = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, tokens, 3, self.num_heads, self.head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        out = exact_attention(q, k, v, heads_last=True)
        return self.merge_heads(out, training=training, heads_first=False)


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
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)
    rng = np.random.default_rng(0)
    names = ("explicit", "fused", "sliced")
    print(f"precision {args.precision}, batch {args.batch}, width {args.dim}, {args.heads} heads; "
          f"ms per forward+backward (mean of {args.repeats})")
    print(f"{'tokens':>6} {'xla':>5} " + " ".join(f"{n + ' ms':>12}" for n in names)
          + f" {'sliced/explicit':>16} {'fused/explicit':>15}")
    for tokens in args.tokens:
        x = tf.constant(rng.normal(size=(args.batch, tokens, args.dim)).astype("float32"))
        layers = [
            tfvit.layers.MultiHeadSelfAttention(args.heads, use_fused_attention=False),
            tfvit.layers.MultiHeadSelfAttention(args.heads, use_fused_attention=True),
            SlicedQKVAttention(args.heads),
        ]
        for layer in layers:
            layer(x)
            layer.set_weights(layers[0].get_weights())
        for jit in (False, True):
            steps = [step_fn(layer, jit) for layer in layers]
            for step in steps:
                step(x)  # trace and compile outside the timing
            totals = [0.0] * len(steps)
            for _ in range(args.repeats):
                for i, step in enumerate(steps):
                    start = time.perf_counter()
                    tf.nest.map_structure(lambda t: t.numpy(), step(x))
                    totals[i] += time.perf_counter() - start
            ms = [1e3 * t / args.repeats for t in totals]
            print(f"{tokens:>6} {str(jit):>5} " + " ".join(f"{m:>12.1f}" for m in ms)
                  + f" {ms[2] / ms[0]:>16.2f} {ms[1] / ms[0]:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
