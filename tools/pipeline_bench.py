"""Is the input pipeline ever the bottleneck? Training on tfvit.data against training on synthetic data.

Three measurements, each in a fresh child process, interleaved round by round (tools/measure.py):

- pipeline: ``tfvit.data.load`` alone (the CIFAR-10 training split from ``--data-dir``, shuffled,
  normalised, augmented with ``--augment``), iterated without a model: the images/s it can supply;
- real: ``model.fit`` of a registry model on that dataset for ``--steps`` steps;
- synthetic: the same ``fit`` on one random batch repeated from memory
  (``tf.data.Dataset.from_tensors(batch).repeat()``), which costs the pipeline nothing.

If real / synthetic is about 1 and the pipeline's rate is well above the training rate, the data
never holds training back. Both fits use the device's default precision and XLA setting
(``tfvit.training.training_defaults``) unless ``--precision`` / ``--jit`` say otherwise.

    python -m tools.pipeline_bench --data-dir ../shared/data [--model vit_cifar_patch4_32]
        [--augment crop_flip] [--batch 128] [--steps 20] [--rounds 3]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.measure import interleaved, median, module_command  # noqa: E402


def child(args):
    import keras
    import tensorflow as tf

    import tfvit
    from tfvit.training.device_defaults import resolve

    precision, jit = resolve(args.precision, args.jit)
    dataset = tfvit.data.load("cifar10", "train", batch_size=args.batch, augment=args.augment or None,
                              data_dir=args.data_dir, drop_remainder=True).repeat()
    if args.child == "pipeline":
        iterator = iter(dataset)
        next(iterator)  # the first batch reads and decodes the files
        start = time.perf_counter()
        for _ in range(args.steps):
            next(iterator)
        return {"images_per_s": args.steps * args.batch / (time.perf_counter() - start)}

    tfvit.training.set_precision(precision)
    model = tfvit.create_model(args.model)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    if args.child == "synthetic":
        images, labels = next(iter(dataset))
        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    warmup = 3
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)  # compiles outside the timing
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return {"images_per_s": args.steps * args.batch / (time.perf_counter() - start),
            "precision": precision, "jit": jit}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("TFVIT_DATA_DIR"))
    parser.add_argument("--model", default="vit_cifar_patch4_32")
    parser.add_argument("--augment", default="crop_flip")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--child", choices=("pipeline", "real", "synthetic"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    # The children run in the repository root: a relative --data-dir is made absolute here.
    passed = ["--model", args.model, "--augment", args.augment, "--batch", args.batch, "--steps", args.steps,
              "--rounds", args.rounds, "--precision", args.precision]
    if args.data_dir:
        passed += ["--data-dir", os.path.abspath(args.data_dir)]
    if args.jit is not None:
        passed.append("--jit" if args.jit else "--no-jit")
    commands = [(kind, module_command("tools.pipeline_bench", *passed, "--child", kind))
                for kind in ("pipeline", "real", "synthetic")]
    results = interleaved(commands, args.rounds)
    pipeline, real, synthetic = (median(results[k], "images_per_s") for k in ("pipeline", "real", "synthetic"))
    setting = results["real"][0]
    print(f"{args.model}, batch {args.batch}, augment {args.augment or 'none'}, {setting['precision']}, "
          f"XLA {'on' if setting['jit'] else 'off'}; images/s, medians of {args.rounds} interleaved rounds")
    print("| pipeline alone | training on tfvit.data | training on synthetic data | real / synthetic |")
    print("|---|---|---|---|")
    print(f"| {pipeline:.0f} | {real:.1f} | {synthetic:.1f} | {real / synthetic:.2f} |")


if __name__ == "__main__":
    main()
