"""GELU, LayerNorm and the bias gradient written by hand (tfvit) against Keras's automatic ones.

Two measurements, both interleaved so a noisy machine slows both sides alike:

1. ``ops``: forward + backward of one GELU on MLP-like activations (batch x tokens, 4 x width),
   of one LayerNorm on a block's tokens (batch, tokens, width) and of one Dense layer (width ->
   4 x width) on them, ``keras.activations.gelu(approximate=False)`` / ``keras.layers.LayerNormalization``
   / ``keras.layers.Dense`` against ``tfvit.layers.gelu`` / ``tfvit.layers.LayerNorm`` /
   ``tfvit.layers.Dense`` (whose bias gradient under bfloat16 is tfvit.layers.bias's), alternated call
   by call in one process (medians over --repeats).
2. ``model``: a whole training step of a tfvit model (``tools/benchmark_child.py``: synthetic data,
   AdamW, ``train_on_batch``) traced with ``TFVIT_CLOSED_FORM_GRADIENTS=0`` (Keras's formulas and
   TensorFlow's autodiff) and without it (tfvit's), each in a fresh process, A B A B.

    python -m tools.elementwise_bench                                    # both, CIFAR ViT and Swin
    python -m tools.elementwise_bench --part ops --precisions float32 mixed_bfloat16 --jit no-xla xla
    python -m tools.elementwise_bench --part model --configs cifar_vit --rounds 5

Ratios are Keras time / tfvit time (above 1: tfvit faster).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.measure import interleaved, median, module_command  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
JIT_MODES = ("no-xla", "xla")
CONFIGS = ("cifar_vit", "cifar_swin", "vit_tiny", "swin_tiny")
SWITCH = "TFVIT_CLOSED_FORM_GRADIENTS"


def time_op_pair(keras_fn, tfvit_fn, x, jit, repeats):
    """Median seconds of forward+backward of each function on ``x``, calls alternated."""
    import tensorflow as tf

    def step_of(fn):
        @tf.function(jit_compile=jit)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
                # a non-uniform upstream gradient, as in training
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cos(tf.cast(y, tf.float32)))
            return tape.gradient(loss, [x, *getattr(fn, "trainable_weights", [])])

        return step

    steps = [step_of(keras_fn), step_of(tfvit_fn)]
    for step in steps:
        [g.numpy() for g in step(x)]  # trace (and compile) first
    times = [[], []]
    for _ in range(repeats):
        for step, out in zip(steps, times):
            start = time.perf_counter()
            [g.numpy() for g in step(x)]
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def ops_part(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import tfvit.layers as layers

    rows = []
    for precision in args.precisions:
        keras.mixed_precision.set_global_policy(precision)
        dtype = keras.mixed_precision.global_policy().compute_dtype
        rng = np.random.default_rng(0)
        hidden = tf.cast(rng.normal(size=(args.batch * args.tokens, 4 * args.width)), dtype)
        tokens = tf.cast(rng.normal(size=(args.batch, args.tokens, args.width)) * 2.0 + 0.5, dtype)
        for jit in args.jit:
            cases = [("GELU", lambda v: keras.activations.gelu(v, approximate=False), layers.gelu, hidden)]
            norms = []
            for norm_class in (keras.layers.LayerNormalization, layers.LayerNorm):
                norm = norm_class(epsilon=1e-6)
                norm.build(tokens.shape)
                norms.append(norm)
            cases.append(("LayerNorm", *norms, tokens))
            # a Dense layer (the MLP's fc1) whole: under bfloat16 tfvit's sums the bias gradient itself
            dense_layers = []
            for dense_class in (keras.layers.Dense, layers.Dense):
                dense = dense_class(4 * args.width)
                dense.build(tokens.shape)
                dense_layers.append(dense)
            cases.append(("Dense", *dense_layers, tokens))
            for name, keras_fn, tfvit_fn, x in cases:
                keras_s, tfvit_s = time_op_pair(keras_fn, tfvit_fn, x, jit == "xla", args.repeats)
                rows.append((name, tuple(x.shape), precision, jit, keras_s, tfvit_s))
                print(f"  {name} {precision} {jit}: Keras {1e3 * keras_s:.2f} ms, tfvit {1e3 * tfvit_s:.2f} ms",
                      file=sys.stderr, flush=True)
    print("Forward + backward of one op, ms (median of "
          f"{args.repeats} alternated calls; ratio = Keras / tfvit):\n")
    print("| op | shape | precision | XLA | Keras ms | tfvit ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, shape, precision, jit, keras_s, tfvit_s in rows:
        print(f"| {name} | {shape} | {precision} | {'yes' if jit == 'xla' else 'no'} | {1e3 * keras_s:.2f} "
              f"| {1e3 * tfvit_s:.2f} | {keras_s / tfvit_s:.2f} |")
    print()


def model_part(args):
    commands = []
    for config in args.configs:
        for precision in args.precisions:
            for jit in args.jit:
                batch = args.model_batch or (128 if config.startswith("cifar") else 16)
                child = module_command("tools.benchmark_child", "train", "--config", config, "--impl", "tfvit",
                                       "--precision", precision, "--jit", jit, "--steps", args.steps,
                                       "--warmup", args.warmup, "--batch", batch)
                for side, value in (("keras", "0"), ("tfvit", "1")):
                    commands.append(((config, precision, jit, side), child, {SWITCH: value}))
    results = interleaved(commands, args.rounds)
    print(f"Whole training step of the tfvit model, images/s (medians over {args.rounds} interleaved round(s), "
          f"{args.warmup} untimed then {args.steps} timed steps); ratio = median of per-round "
          f"tfvit / Keras:\n")
    print("| config | precision | XLA | Keras's LN/GELU img/s | tfvit's img/s | ratio | per round | Keras's peak MB "
          "| tfvit's peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for config in args.configs:
        for precision in args.precisions:
            for jit in args.jit:
                a, b = (results[(config, precision, jit, side)] for side in ("keras", "tfvit"))
                failed = [r["error"] for r in a + b if "error" in r]
                if failed:
                    print(f"| {config} | {precision} | {jit} | failed: {failed[0]} ||||||")
                    continue
                ratios = [y["images_per_s"] / x["images_per_s"] for x, y in zip(a, b)]
                print(f"| {config} | {precision} | {'yes' if jit == 'xla' else 'no'} "
                      f"| {median(a, 'images_per_s'):.1f} | {median(b, 'images_per_s'):.1f} "
                      f"| {statistics.median(ratios):.2f} | {' '.join(f'{r:.2f}' for r in ratios)} "
                      f"| {median(a, 'peak_mb'):.0f} | {median(b, 'peak_mb'):.0f} |")
    print()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("ops", "model", "both"), default="both")
    parser.add_argument("--precisions", nargs="+", default=["mixed_bfloat16", "float32"], choices=PRECISIONS)
    parser.add_argument("--jit", nargs="+", default=["no-xla", "xla"], choices=JIT_MODES)
    parser.add_argument("--batch", type=int, default=128, help="ops: batch of the activations")
    parser.add_argument("--tokens", type=int, default=65, help="ops: tokens per image (CIFAR ViT: 65)")
    parser.add_argument("--width", type=int, default=192, help="ops: token width (GELU runs on 4x width)")
    parser.add_argument("--repeats", type=int, default=15, help="ops: alternated calls per op")
    parser.add_argument("--configs", nargs="+", default=["cifar_vit", "cifar_swin"], choices=CONFIGS)
    parser.add_argument("--model-batch", type=int, help="model: batch (default 128 at 32x32, 16 at 224x224)")
    parser.add_argument("--rounds", type=int, default=3, help="model: interleaved rounds")
    parser.add_argument("--steps", type=int, default=10, help="model: timed steps per child")
    parser.add_argument("--warmup", type=int, default=2, help="model: untimed steps first (at least 1)")
    args = parser.parse_args(argv)
    if min(args.batch, args.tokens, args.width, args.repeats, args.rounds, args.steps, args.warmup) < 1:
        parser.error("sizes, --repeats, --rounds, --steps and --warmup must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.part in ("ops", "both"):
        ops_part(args)
    if args.part in ("model", "both"):
        model_part(args)


if __name__ == "__main__":
    main()
