"""Whole training steps of a tfvit model with different sets of XLA element-wise clusters, side by side.

``tfvit/layers/xla_cluster.py`` compiles element-wise work (GELU with its bias, LayerNorm) as
nested XLA clusters inside a step that TensorFlow runs without whole-step XLA. Each ``--variants``
entry is a value of ``TFVIT_XLA_CLUSTERS`` (``none``, ``all``, or names joined by commas).

How it measures: one child process (``--rounds`` of them, fresh each) builds the model once per
variant (the setting is read when the train function is traced), as ``tools/benchmark_child.py``
does (synthetic batch, AdamW, ``train_on_batch``), and then times their steps alternately, step by
step: A B C A B C ... On a shared machine whose speed drifts within a minute, steps taken a second
apart see the same machine, so the per-step ratios are far steadier than those of whole processes
run one after the other. Peak memory cannot be told apart in one process; ``python -m
tools.benchmark`` measures it per process.

    python -m tools.xla_cluster_bench                                     # none against all, CIFAR ViT and Swin
    python -m tools.xla_cluster_bench --part kernels                      # which work XLA does faster
    python -m tools.xla_cluster_bench --variants none gelu layer_norm all --rounds 3 --steps 8
    python -m tools.xla_cluster_bench --configs vit_tiny swin_tiny --batch 16 --steps 6

``--part kernels`` says which work pays as a cluster: pieces of a CIFAR ViT step (bfloat16, 128 x 65
tokens of width 192, MLP width 768, 3 heads), each as a TensorFlow graph and as an XLA-compiled
function, called alternately in one process (medians of ``--repeats``): an element-wise chain (the
GELU), row reductions (LayerNorm's moments over the width, as sums and as products with a constant
column; the softmax over the keys, forward and backward) and a sum across rows (a bias gradient over
the tokens).

Printed per config and variant: images/s (median step), the speed-up over the first variant (the
median over rounds of each child's median of step-by-step ratios) with the per-round values.
The compile time of the first step is ``python -m tools.benchmark``'s "compile s" (here the first
model built in a process would also pay the process's own warm-up). mixed_bfloat16 without
whole-step XLA unless ``--precision`` / ``--jit`` say otherwise.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfvit.layers import xla_cluster  # noqa: E402
from tools.benchmark_config import CONFIGS, JIT_MODES, PRECISIONS  # noqa: E402
from tools.measure import interleaved, module_command  # noqa: E402

SWITCH = xla_cluster.SWITCH


def step_ratios(step_times):
    """{variant: median over steps of (first variant's step time / this variant's)} for times taken
    alternately, step i of every variant one after the other."""
    first = next(iter(step_times))
    return {v: statistics.median(a / b for a, b in zip(step_times[first], times)) for v, times in step_times.items()}


def child(args):
    from tools.benchmark_child import training_setup

    steps = {}
    for variant in args.variants:
        os.environ[SWITCH] = variant
        model, x, y = training_setup(args.config, "tfvit", args.precision, args.jit, args.batch)
        for _ in range(args.warmup):  # the first traces (and compiles the clusters) with this setting
            model.train_on_batch(x, y)
        steps[variant] = (model, x, y)
    times = {variant: [] for variant in args.variants}
    for _ in range(args.steps):
        for variant, (model, x, y) in steps.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[variant].append(time.perf_counter() - start)
    print(json.dumps({"step_s": {v: statistics.median(t) for v, t in times.items()},
                      "speedup": step_ratios(times)}))


def kernel_cases():
    """[(name, function, arguments)]: the pieces ``--part kernels`` times, at CIFAR ViT sizes, bfloat16."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    bf16 = lambda *shape: tf.constant(rng.normal(size=shape), tf.bfloat16)
    tokens, hidden = bf16(128, 65, 192), bf16(128 * 65, 768)
    logits, upstream = bf16(128, 3, 65, 65), bf16(128, 3, 65, 65)
    f32 = lambda t: tf.cast(t, tf.float32)

    def gelu_chain(h):
        z = f32(h)
        return tf.cast(z * 0.5 * (1.0 + tf.math.erf(z * 0.7071067811865476)), h.dtype)

    def row_moments(x):
        x32 = f32(x)
        centred = x32 - tf.reduce_mean(x32, -1, keepdims=True)
        return tf.cast(centred * tf.math.rsqrt(tf.reduce_mean(centred * centred, -1, keepdims=True) + 1e-6), x.dtype)

    def row_moments_as_products(x):  # tfvit's LayerNorm cluster: the sums as products with a constant column
        x32 = tf.reshape(f32(x), (-1, x.shape[-1]))
        mean_of = lambda t: tf.matmul(t, tf.fill((x.shape[-1], 1), 1.0 / x.shape[-1]))
        centred = x32 - mean_of(x32)
        return tf.reshape(tf.cast(centred * tf.math.rsqrt(mean_of(centred * centred) + 1e-6), x.dtype), x.shape)

    def column_sum(x):
        return tf.reduce_sum(f32(x), axis=(0, 1))

    def softmax_forward(l):
        return tf.cast(tf.nn.softmax(f32(l) * 0.125, axis=-1), l.dtype)

    weights = tf.nn.softmax(f32(logits), axis=-1)

    def softmax_backward(g, w):
        g = f32(g)
        return tf.cast(0.125 * w * (g - tf.reduce_sum(g * w, -1, keepdims=True)), tf.bfloat16)

    return [("GELU, element-wise (8320 x 768)", gelu_chain, (hidden,)),
            ("LayerNorm moments, row sums (8320 x 192)", row_moments, (tokens,)),
            ("LayerNorm moments, row sums as products", row_moments_as_products, (tokens,)),
            ("bias gradient, sum across 8320 rows", column_sum, (tokens,)),
            ("softmax forward, rows of 65", softmax_forward, (logits,)),
            ("softmax backward, rows of 65", softmax_backward, (upstream, weights))]


def kernels_part(repeats):
    import tensorflow as tf

    print(f"One piece of work as a TensorFlow graph and as an XLA cluster, ms (medians of {repeats} alternated "
          f"calls, one process); ratio = TensorFlow / XLA (above 1: the cluster pays):\n")
    print("| work | TensorFlow ms | XLA ms | ratio |")
    print("|---|---|---|---|")
    for name, fn, arguments in kernel_cases():
        pair = [tf.function(fn, autograph=False), tf.function(fn, autograph=False, jit_compile=True)]
        times = [[], []]
        for f in pair:
            f(*arguments).numpy()  # trace and compile
        for _ in range(repeats):
            for f, out in zip(pair, times):
                start = time.perf_counter()
                f(*arguments).numpy()
                out.append(time.perf_counter() - start)
        graph, xla = (statistics.median(t) for t in times)
        print(f"| {name} | {1e3 * graph:.2f} | {1e3 * xla:.2f} | {graph / xla:.2f} |", flush=True)
    print()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("steps", "kernels"), default="steps")
    parser.add_argument("--repeats", type=int, default=40, help="kernels: alternated calls per piece")
    parser.add_argument("--configs", nargs="+", default=["cifar_vit", "cifar_swin"], choices=list(CONFIGS))
    parser.add_argument("--variants", nargs="+", default=["none", "all"],
                        help=f"values of {SWITCH}; the first is the baseline of the speed-ups")
    parser.add_argument("--precision", default="mixed_bfloat16", choices=PRECISIONS)
    parser.add_argument("--jit", default="no-xla", choices=JIT_MODES)
    parser.add_argument("--batch", type=int, help="default: the benchmark's (128 at 32x32, 32 at 224x224)")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per config")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant in each child")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first compiles)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.warmup, args.repeats) < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--rounds, --steps, --warmup, --repeats and --batch must be at least 1.")
    args.batches = {config: args.batch or CONFIGS[config][1] for config in args.configs + [args.config] if config}
    for variant in args.variants:
        os.environ[SWITCH] = variant
        try:
            xla_cluster.enabled_clusters()
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.part == "kernels":
        return kernels_part(args.repeats)
    if args.child:
        args.batch = args.batches[args.config]
        return child(args)
    commands = [(config, module_command("tools.xla_cluster_bench", "--child", "--config", config,
                                        "--variants", *args.variants, "--precision", args.precision,
                                        "--jit", args.jit, "--steps", args.steps, "--warmup", args.warmup,
                                        *(["--batch", args.batch] if args.batch else [])))
                for config in args.configs]
    results = interleaved(commands, args.rounds)
    print(f"Training step of the tfvit model, {args.precision}, {args.jit}: {args.rounds} child process(es) per "
          f"config, each timing {args.steps} steps of every variant alternately after {args.warmup} untimed; "
          f"speed-up = median over children of the median step-by-step ratio to the first variant:\n")
    print(f"| config | {SWITCH} | img/s | speed-up | per child |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        runs = results[config]
        batch = args.batches[config]
        for variant in args.variants:
            speedups = [r["speedup"][variant] for r in runs]
            step_s = statistics.median(r["step_s"][variant] for r in runs)
            print(f"| {config} | {variant} | {batch / step_s:.1f} | {statistics.median(speedups):.2f} "
                  f"| {' '.join(f'{s:.2f}' for s in speedups)} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
