"""What exactness costs: a training step with tfvit's dense table gradients and keyed random masks,
against the same step with Keras's gather and Keras's SeedGenerator draws put back.

Variants (each a fresh child process; rounds interleaved A B C A B C, medians):
- ``tfvit``: as shipped (``take_rows`` for the bias tables, ``keyed_random`` masks);
- ``keras-gather``: the tables read with ``keras.ops.take`` (an IndexedSlices gradient, wrong under Adam);
- ``keras-random``: the dropout and drop-path masks drawn from each layer's SeedGenerator, as
  ``keras.layers.Dropout`` does (different masks per micro-batch under accumulation).
Models: the registry configurations with their own stochastic depth (0.1) and ``--dropout`` on every
dropout layer, synthetic data held in memory, AdamW, ``train_on_batch``. ``--part layer`` times one
dropout layer instead (tfvit's keyed ``Dropout``, ``keras.layers.Dropout`` and no dropout, forward +
backward on a (128, 65, 384) activation, calls alternated in one process, medians).

    python -m tools.exactness_cost_bench                       # CIFAR Swin and ViT, mixed_bfloat16, no XLA
    python -m tools.exactness_cost_bench --precision float32 --jit --rounds 3
    python -m tools.exactness_cost_bench --part layer

Ratios are variant time / tfvit time (above 1: tfvit faster).
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tools.measure import interleaved, module_command  # noqa: E402

CONFIGS = {"cifar_swin": "swin_cifar_patch2_window4_32", "cifar_vit": "vit_cifar_patch4_32"}
VARIANTS = ("tfvit", "keras-gather", "keras-random")


def put_back_keras(variant):
    """Monkeypatch this process's tfvit back to Keras's behaviour for ``variant``."""
    import keras
    from keras import ops

    from tfvit.layers import keyed_random, local, window

    if variant == "keras-gather":
        window.take_rows = local.take_rows = lambda table, indices: ops.take(table, indices, axis=0)
    elif variant == "keras-random":
        def keras_keep_mask(shape, rate, layer_seed, seed_generator, dtype):
            keep = 1.0 - rate
            draw = keras.random.uniform(shape, seed=seed_generator, dtype="float32")
            return ops.cast(ops.cast(draw < keep, "float32") / keep, dtype)

        keyed_random.keep_mask = keras_keep_mask


def child(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import tfvit

    put_back_keras(args.variant)
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    options = dict(dropout=args.dropout, attention_dropout=args.dropout) if args.dropout else {}
    model = tfvit.create_model(CONFIGS[args.config], num_classes=10, **options)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=args.jit)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch, *model.input_shape[1:]), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, args.batch))
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    print(json.dumps({"ms_per_step": 1000 * statistics.median(times)}))


def time_dropout_layers(repeats, jit):
    """Median ms of forward + backward through tfvit's Dropout, Keras's and none, calls alternated."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfvit.layers import Dropout, keyed_random

    x = tf.constant(np.random.default_rng(0).normal(size=(128, 65, 384)).astype("float32"))

    def step_of(layer, keyed):
        @tf.function(jit_compile=jit)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                if keyed:  # the scope a train step opens: update 3, the whole batch
                    with keyed_random.example_keyed_draws(tf.constant(3, tf.int64), 0, 128):
                        y = layer(x, training=True)
                else:
                    y = layer(x, training=True)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, x)

        return step

    steps = {"tfvit Dropout": step_of(Dropout(0.1, seed=1), True),
             "keras.layers.Dropout": step_of(keras.layers.Dropout(0.1, seed=1), False),
             "no dropout": step_of(lambda x, training: x, False)}
    for step in steps.values():
        step(x).numpy()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step(x).numpy()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["model", "layer"], default="model")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["cifar_swin", "cifar_vit"])
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="mixed_bfloat16")
    p.add_argument("--jit", action="store_true", help="compile the steps with XLA")
    p.add_argument("--dropout", type=float, default=0.1, help="rate of every dropout layer (default 0.1)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per child (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, default="tfvit", help=argparse.SUPPRESS)
    p.add_argument("--config", choices=sorted(CONFIGS), default="cifar_swin", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.part == "layer":
        ms = time_dropout_layers(repeats=30, jit=args.jit)
        mode = "XLA" if args.jit else "no XLA"
        print(f"one dropout layer (rate 0.1) on (128, 65, 384) float32, forward + backward, {mode}, "
              f"median of 30 alternated calls:\n")
        print("| layer | ms |\n|---|---|")
        for name, value in ms.items():
            print(f"| {name} | {value:.1f} |")
        return None
    shared = ["--precision", args.precision, "--dropout", str(args.dropout), "--batch", str(args.batch),
              "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--jit"] if args.jit else [])
    commands = [((config, variant), module_command("tools.exactness_cost_bench", "--child", "--config", config,
                                                   "--variant", variant, *shared))
                for config in args.configs for variant in VARIANTS]
    results = interleaved(commands, args.rounds)
    print(f"\n{args.precision}, {'XLA' if args.jit else 'no XLA'}, batch {args.batch}, dropout {args.dropout}, "
          f"stochastic depth 0.1; ms per step, median of {args.rounds} rounds (per-round ratios in brackets)\n")
    print("| model | tfvit | keras-gather | ratio | keras-random | ratio |\n|---|---|---|---|---|---|")
    for config in args.configs:
        ms = {v: [r["ms_per_step"] for r in results[(config, v)]] for v in VARIANTS}
        cells = [f"{statistics.median(ms['tfvit']):.0f}"]
        for variant in VARIANTS[1:]:
            ratios = [other / ours for other, ours in zip(ms[variant], ms["tfvit"])]
            spread = f"[{min(ratios):.2f}-{max(ratios):.2f}]"
            cells += [f"{statistics.median(ms[variant]):.0f}", f"{statistics.median(ratios):.2f} {spread}"]
        print(f"| {CONFIGS[config]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
