"""Forward+backward time and peak memory of one attention layer as the sequence grows.

Layers: global (MultiHeadSelfAttention), Performer softmax with m = 64 and 256 random features,
Performer ReLU (m = 64), 2D neighbourhood attention (k = 7) and 1D local attention (window 49,
the same number of keys as 7x7), each on N = 64, 256, 1024, 4096 tokens (square grids), 4 heads of
64 channels, and the linear-cost layers (all but global) also on ``--long-tokens`` (9216 = 96^2, 16384; 16384
tokens of global attention would need about 17 GB per score tensor). Every (layer, N) runs in its own
child process, interleaved round by round; the table gives medians, and for each layer the crossover N
from which it is faster than global attention (at every measured N from there on), and its speed and
memory ratios at the largest N both ran.

    python -m tools.attention_bench [--batch 4] [--rounds 2] [--tokens 64 256 1024 4096] [--long-tokens 9216 16384]

Memory is the child's peak resident set size during the timed steps minus its size before the
first step (``tfvit.training.memory``: Linux's exact high-water mark where it can be reset, else
psutil sampling): what the layer's forward and backward pass allocate.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.measure import interleaved, median, module_command  # noqa: E402

LAYERS = {
    "global": lambda L, heads: L.MultiHeadSelfAttention(heads, use_fused_attention=False),
    "performer_softmax_m64": lambda L, heads: L.PerformerAttention(heads, kernel="softmax", num_features=64, seed=0),
    "performer_softmax_m256": lambda L, heads: L.PerformerAttention(heads, kernel="softmax", num_features=256, seed=0),
    "performer_relu_m64": lambda L, heads: L.PerformerAttention(heads, kernel="relu", num_features=64, seed=0),
    "local2d_k7": lambda L, heads: L.NeighborhoodAttention2D(heads, kernel_size=7),
    "local1d_w49": lambda L, heads: L.LocalAttention1D(heads, window=49),
}


def child(args):
    import numpy as np
    import tensorflow as tf

    from tfvit import layers
    from tfvit.training.memory import PeakResidentMemory, resident_mb

    layer = LAYERS[args.layer](layers, args.heads)
    x = tf.constant(np.random.default_rng(0).normal(size=(args.batch, args.tokens, args.heads * 64)).astype("float32"))
    layer(x)

    @tf.function(jit_compile=args.jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x, training=True)))
        return tape.gradient(loss, [x] + layer.trainable_weights)

    baseline = resident_mb()
    for _ in range(args.warmup):
        tf.nest.map_structure(lambda t: t.numpy(), step(x))
    with PeakResidentMemory(baseline_mb=baseline) as memory:
        start = time.perf_counter()
        for _ in range(args.steps):
            tf.nest.map_structure(lambda t: t.numpy(), step(x))
        elapsed = time.perf_counter() - start
    print(json.dumps({"ms": 1000 * elapsed / args.steps, "mb": memory.added_mb}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--long-tokens", type=int, nargs="*", default=[9216, 16384],
                        help="sizes for the linear-cost layers only (not global)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.tokens = args.tokens[0]
        return child(args)

    def sizes(layer):
        return args.tokens + ([] if layer == "global" else [n for n in args.long_tokens if n not in args.tokens])

    all_sizes = sorted({n for layer in args.layers for n in sizes(layer)})
    commands = [((layer, n), module_command("tools.attention_bench", "--child", "--layer", layer, "--tokens", n,
                                            "--batch", args.batch, "--heads", args.heads, "--steps", args.steps,
                                            "--warmup", args.warmup, *(["--jit"] if args.jit else [])))
                for n in all_sizes for layer in args.layers if n in sizes(layer)]
    results = interleaved(commands, args.rounds)
    print(f"\nOne attention layer, forward + backward, batch {args.batch}, {args.heads} heads x 64 channels, "
          f"jit_compile={args.jit}, medians of {args.rounds} interleaved rounds\n")
    print("| layer | " + " | ".join(f"N={n} ms | N={n} MB" for n in all_sizes) + " |")
    print("|---|" + "---|---|" * len(all_sizes))
    for layer in args.layers:
        cells = [f"{median(results[layer, n], 'ms'):.1f} | {median(results[layer, n], 'mb'):.0f}"
                 if (layer, n) in results else "- | -" for n in all_sizes]
        print(f"| {layer} | " + " | ".join(cells) + " |")
    if "global" in args.layers:
        print()
        for layer in (l for l in args.layers if l != "global"):
            print(crossover_line(layer, results, args.tokens))


def crossover_line(layer, results, shared_sizes):
    """The smallest measured N from which ``layer`` is faster than global at every measured N, and its
    speed-up and memory ratio at the largest N both ran."""
    def ms(name, n):
        return median(results[name, n], "ms")

    faster = [ms(layer, n) < ms("global", n) for n in shared_sizes]
    crossover = next((n for i, n in enumerate(shared_sizes) if all(faster[i:])), None)
    n = max(shared_sizes)
    speed = ms("global", n) / ms(layer, n)
    memory = median(results["global", n], "mb") / max(median(results[layer, n], "mb"), 1e-9)
    where = f"from N={crossover}" if crossover is not None else f"at no N up to {n}"
    return f"{layer}: faster than global {where}; at N={n}: {speed:.1f}x faster, {memory:.1f}x less memory"


if __name__ == "__main__":
    main()
