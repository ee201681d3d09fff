"""Is keras.ops.dot_product_attention faster than tfvit's explicit attention on this backend?

Times forward+backward of MultiHeadSelfAttention with use_fused_attention=True and False,
interleaved (A B A B ...) so both see the same machine load, with and without XLA.

    python tools/attention_path_bench.py [--batch 64] [--dim 256] [--heads 4] [--repeats 10]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfvit  # noqa: E402


def step_fn(layer, jit):
    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x] + layer.trainable_weights)
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tokens", type=int, nargs="+", default=[65, 197])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'tokens':>6} {'xla':>5} {'fused ms':>9} {'explicit ms':>12} {'fused/explicit':>15}")
    for tokens in args.tokens:
        x = tf.constant(rng.normal(size=(args.batch, tokens, args.dim)).astype("float32"))
        fused = tfvit.layers.MultiHeadSelfAttention(args.heads, use_fused_attention=True)
        explicit = tfvit.layers.MultiHeadSelfAttention(args.heads, use_fused_attention=False)
        fused(x), explicit(x)
        explicit.set_weights(fused.get_weights())
        for jit in (False, True):
            steps = [step_fn(fused, jit), step_fn(explicit, jit)]
            for step in steps:
                step(x)  # trace and compile outside the timing
            totals = [0.0, 0.0]
            for _ in range(args.repeats):
                for i, step in enumerate(steps):
                    start = time.perf_counter()
                    tf.nest.map_structure(lambda t: t.numpy(), step(x))
                    totals[i] += time.perf_counter() - start
            a, b = (1e3 * t / args.repeats for t in totals)
            print(f"{tokens:>6} {str(jit):>5} {a:>9.2f} {b:>12.2f} {a / b:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
