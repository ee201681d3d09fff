"""One measurement of tools/benchmark.py, in a fresh process: the parent runs it round by round as

    python -m tools.benchmark_child train --config cifar_vit --impl tfvit --precision float32 --jit xla
    python -m tools.benchmark_child train --config cifar_vit --impl timm --precision float32 --jit no-xla
    python -m tools.benchmark_child info --config cifar_vit --with-keras-hub --with-timm
    python -m tools.benchmark_child matmul --matmul-size 2048

and reads the JSON line it prints last (``{"error": ...}`` if it failed, so the other runs go on).

``train`` sets the global mixed-precision policy, builds the model (``tools.benchmark_config``),
compiles it with AdamW(1e-3), SparseCategoricalCrossentropy(from_logits=True) (tfvit's heads return
logits; the flag follows the configuration's ``classifier_activation``), no metrics, ``jit_compile``
on or off, and feeds one fixed random batch held in memory to ``model.train_on_batch``.
train_on_batch and not ``fit`` over ``tf.data.Dataset.from_tensors(batch).repeat()``: it runs the
same compiled train function as fit without the dataset iterator, callbacks and epoch set-up, and
each call returns the loss as a NumPy value, so a step has finished (also on a GPU) when its call
returns and every timed step is one whole step, timed alone. What it adds is Keras's Python
dispatch per call, the same for both implementations and small next to a training step of these
models. The first ``--warmup`` steps are not timed (the first one traces and compiles the train
function; its time minus one step's is ``compile_s``); the next ``--steps`` are. Peak memory is the
process's peak resident set size during the timed steps (``tfvit.training.memory``'s probe), and on
a GPU also the device allocator's peak. The children import keras-hub (when installed) whatever
they measure, so both implementations pay the same import memory.

``--impl timm`` runs PyTorch + timm instead (``tools/benchmark_torch.py``: how precision and jit
map onto PyTorch); that child imports neither TensorFlow nor keras-hub.

``info`` builds the models in float32 and counts their parameters and MACs per image; ``matmul``
times a square matmul per dtype with and without XLA, the peak the parent compares rates with.
"""

import argparse
import json
import math
import os
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.benchmark_config import (  # noqa: E402
    CONFIGS, IMPLS, JIT_MODES, MATMUL_DTYPES, PRECISIONS, build, build_keras_hub, build_tfvit, from_logits,
    keras_hub_arguments, keras_hub_available, tfvit_config, timm_arguments,
)


def matmul_flops(size):
    """FLOPs of one (size x size) @ (size x size) product."""
    return 2 * size ** 3


def _import_keras_hub_if_installed():
    # Both implementations' children import it, so that neither pays alone for its resident memory.
    if keras_hub_available():
        import keras_hub  # noqa: F401


def child_info(args):
    """Both models in float32: parameter counts and MACs per image."""
    import keras

    import tfvit

    name = CONFIGS[args.config][0]
    model = build_tfvit(name)
    stats = tfvit.stats(model)
    out = dict(input_shape=list(stats.input_shape), num_classes=int(model.output_shape[-1]),
               tfvit_params=stats.params, tfvit_trainable=stats.trainable_params, tfvit_macs=stats.macs)
    del model
    keras.backend.clear_session()
    if args.with_keras_hub:
        try:
            family, backbone_args, classifier_args = keras_hub_arguments(name)
            out["keras_hub_arguments"] = dict(family=family, backbone=backbone_args, classifier=classifier_args)
            model = build_keras_hub(name)
            out["keras_hub_params"] = int(model.count_params())
            out["keras_hub_trainable"] = int(sum(math.prod(w.shape) for w in model.trainable_weights))
            try:
                out["keras_hub_macs"] = tfvit.stats(model, stats.input_shape).macs
            except Exception as error:  # the count is a cross-check only
                out["keras_hub_macs_error"] = f"{type(error).__name__}: {error}"
        except Exception as error:
            out["keras_hub_error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if args.with_timm:
        try:
            from tools.benchmark_torch import build_timm, count_params

            family, arguments = timm_arguments(name)
            out["timm_arguments"] = [family, arguments]
            out["timm_params"], out["timm_trainable"] = count_params(build_timm(family, arguments))
        except Exception as error:
            out["timm_error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    print(json.dumps(out))


def child_matmul(args):
    """GFLOP/s of a square matmul per dtype, with and without XLA: best of ``--matmul-repeats``."""
    import numpy as np
    import tensorflow as tf

    out = {}
    n = args.matmul_size
    rng = np.random.default_rng(0)
    for dtype in MATMUL_DTYPES:
        a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
        b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
        for jit in JIT_MODES:
            product = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=jit == "xla")
            float(product(a, b)[0, 0])  # trace, compile
            best = math.inf
            for _ in range(args.matmul_repeats):
                start = time.perf_counter()
                float(product(a, b)[0, 0])  # reading an element waits for the product
                best = min(best, time.perf_counter() - start)
            out[f"{dtype}/{jit}"] = matmul_flops(n) / best / 1e9
    print(json.dumps(out))


def training_setup(config, impl, precision, jit, batch):
    """The measured training step's set-up: the model of ``config`` by ``impl`` under the ``precision``
    policy, compiled with AdamW(1e-3) and the cross-entropy (``jit`` "xla" or "no-xla"), and one fixed
    synthetic batch (x, y) of ``batch`` images. Returns (model, x, y). Also used by tools.op_profile."""
    import keras
    import numpy as np
    import tensorflow as tf

    name = CONFIGS[config][0]
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build(impl, name)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits(tfvit_config(name)[1])),
                  metrics=[], jit_compile=jit == "xla")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *model.input_shape[1:]), dtype=np.float32))
    y = tf.constant(rng.integers(0, model.output_shape[-1], batch))
    return model, x, y


def child_train(args):
    if args.impl == "timm":
        from tools.benchmark_torch import child_train_timm

        return child_train_timm(args)
    import numpy as np
    import tensorflow as tf

    from tfvit.training.memory import PeakResidentMemory, resident_mb

    _import_keras_hub_if_installed()
    model, x, y = training_setup(args.config, args.impl, args.precision, args.jit, args.batch)
    gpu = bool(tf.config.list_physical_devices("GPU"))

    baseline = resident_mb()
    with PeakResidentMemory(baseline_mb=baseline) as warm:
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first_step_s = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            model.train_on_batch(x, y)
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    step_times = []
    with PeakResidentMemory(baseline_mb=baseline) as memory:
        for _ in range(args.steps):
            start = time.perf_counter()
            loss = model.train_on_batch(x, y)
            step_times.append(time.perf_counter() - start)
    elapsed = sum(step_times)
    loss = float(np.asarray(loss if not isinstance(loss, (list, tuple)) else loss[0]))
    out = dict(
        images_per_s=args.batch * args.steps / elapsed, ms_per_step=1000 * elapsed / args.steps,
        step_ms=[1000 * t for t in step_times], first_step_s=first_step_s,
        compile_s=max(first_step_s - elapsed / args.steps, 0.0), peak_mb=memory.peak_mb,
        training_mb=memory.added_mb, warmup_peak_mb=warm.peak_mb, params=int(model.count_params()), loss=loss,
        finite_loss=bool(np.isfinite(loss)), compute_dtype=model.dtype_policy.compute_dtype,
        output_dtype=str(model.output.dtype), device="GPU" if gpu else "CPU",
    )
    if gpu:
        out["device_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    print(json.dumps(out))


def run_child(function, args):
    """Run a child; any exception becomes a last JSON line {"error": ...} so the other runs go on."""
    try:
        function(args)
    except Exception as error:
        traceback.print_exc()
        message = str(error).strip().splitlines()
        print(json.dumps({"error": f"{type(error).__name__}: {message[0] if message else ''}"[:300]}))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("train", "info", "matmul"))
    parser.add_argument("--config", choices=list(CONFIGS), default="cifar_vit")
    parser.add_argument("--impl", choices=IMPLS, default="tfvit")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--jit", choices=JIT_MODES, default="xla")
    parser.add_argument("--batch", type=int, help="default: the configuration's (128 at 32x32, 32 at 224x224)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first compiles)")
    parser.add_argument("--with-keras-hub", action="store_true", help="info: also build keras-hub's model")
    parser.add_argument("--with-timm", action="store_true", help="info: also build timm's model")
    parser.add_argument("--timm-arguments", metavar="JSON",
                        help="train --impl timm: [family, arguments] as info gave them, so that the child need "
                             "not import tfvit (and TensorFlow) to map the configuration")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1: the first step compiles.")
    args.batch = args.batch or CONFIGS[args.config][1]
    return args


def main(argv=None):
    args = parse_args(argv)
    run_child(dict(train=child_train, info=child_info, matmul=child_matmul)[args.kind], args)


if __name__ == "__main__":
    main()
