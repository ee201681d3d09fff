"""Time per step and peak memory of gradient accumulation at one effective batch size.

Compares tfvit's GradientAccumulationModel with steps = 1, 2, 4, 8 and Keras's optimizer-side
``gradient_accumulation_steps`` (fed micro-batches, so one effective batch costs N of its steps),
all at the same effective batch. Each measurement runs in a fresh child process (so peak memory is
that configuration's alone) and the configurations are interleaved round by round (A B C ... A B C)
so that a noisy machine slows them alike; the table reports medians over rounds.

    python -m tools.accumulation_bench [--model swin_cifar_patch2_window4_32] [--batch 256] [--rounds 3]
    python -m tools.accumulation_bench --precision float32 --jit xla    # the configuration of the first table

``--precision`` and ``--jit`` default to this machine's training defaults
(``tfvit.training.training_defaults()``: mixed_bfloat16 without XLA on a CPU with bfloat16 units).

Peak memory is the peak resident set size of the child during the timed steps
(``tfvit.training.memory``: Linux's exact high-water mark where it can be reset, else psutil
sampling); "training memory" is that peak minus the resident size just before the first step, i.e.
what the steps themselves added (activations, gradients, optimizer state, compiled code).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.measure import interleaved, module_command  # noqa: E402
from tools.measure import median as measure_median  # noqa: E402


def child(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import tfvit
    from tfvit.training import GradientAccumulationModel, set_precision
    from tfvit.training.memory import PeakResidentMemory, resident_mb

    set_precision(args.precision)
    keras.utils.set_random_seed(0)
    model = tfvit.create_model(args.model, num_classes=10)
    rng = np.random.default_rng(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if args.mode == "keras":
        batch, calls = args.batch // args.accum, args.accum  # one effective batch = N optimizer calls
        trainer = model
        trainer.compile(optimizer=keras.optimizers.AdamW(1e-3, gradient_accumulation_steps=args.accum), loss=loss,
                        jit_compile=args.jit)
    else:
        batch, calls = args.batch, 1
        trainer = GradientAccumulationModel(model, accum=args.accum) if args.accum > 1 else model
        trainer.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss, jit_compile=args.jit)
    x = tf.constant(rng.random((batch, *model.input_shape[1:]), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch))
    baseline = resident_mb()
    for _ in range(args.warmup * calls):
        trainer.train_on_batch(x, y)
    with PeakResidentMemory(baseline_mb=baseline) as memory:
        start = time.perf_counter()
        for _ in range(args.steps * calls):
            trainer.train_on_batch(x, y)
        elapsed = time.perf_counter() - start
    print(json.dumps({"step_time": elapsed / args.steps, "peak_mb": memory.peak_mb, "training_mb": memory.added_mb}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="swin_cifar_patch2_window4_32")
    parser.add_argument("--batch", type=int, default=256, help="effective batch size")
    parser.add_argument("--accum", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--keras-accum", type=int, default=4, help="steps for Keras's optimizer accumulation (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed effective-batch steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="a Keras dtype policy, or auto (the device default)")
    parser.add_argument("--jit", choices=("auto", "xla", "no-xla"), default="auto",
                        help="whole-step XLA (jit_compile) or not; auto: the device default")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="tfvit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from tfvit.training.device_defaults import resolve

    args.precision, args.jit = resolve(args.precision, None if args.jit == "auto" else args.jit == "xla")
    if args.child:
        args.accum = args.accum[0]
        return child(args)

    configs = [("tfvit", n) for n in args.accum] + ([("keras", args.keras_accum)] if args.keras_accum else [])
    commands = [((mode, accum), module_command("tools.accumulation_bench", "--child", "--mode", mode, "--accum", accum,
                                               "--model", args.model, "--batch", args.batch, "--steps", args.steps,
                                               "--warmup", args.warmup, "--precision", args.precision,
                                               "--jit", "xla" if args.jit else "no-xla"))
                for mode, accum in configs]
    results = interleaved(commands, args.rounds)
    median = lambda key, c: measure_median(results[c], key)
    reference = ("tfvit", 1) if ("tfvit", 1) in results else configs[0]
    print(f"\n{args.model}, effective batch {args.batch}, {args.precision}, jit_compile={args.jit}, {args.rounds} "
          f"interleaved rounds "
          f"(medians)\n")
    print("| implementation | accum | micro-batch | s/step | vs accum 1 | peak RSS MB | training MB | vs accum 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for c in configs:
        mode, accum = c
        print(f"| {'tfvit GradientAccumulationModel' if mode == 'tfvit' else 'Keras optimizer accumulation'} "
              f"| {accum} | {-(-args.batch // accum)} | {median('step_time', c):.3f} "
              f"| {median('step_time', c) / median('step_time', reference):.2f} | {median('peak_mb', c):.0f} "
              f"| {median('training_mb', c):.0f} | {median('training_mb', c) / median('training_mb', reference):.2f} |")


if __name__ == "__main__":
    main()
