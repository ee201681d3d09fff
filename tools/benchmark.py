"""Training throughput of tfvit's ViT and Swin against keras-hub's ViTBackbone / SwinTransformerBackbone.

For every (configuration, precision, XLA on/off) the benchmark trains both implementations of the
same architecture on synthetic data and reports images/s, ms/step, peak resident memory, achieved
FLOP/s and its fraction of a measured matmul peak:

    python tools/benchmark.py                                        # everything (long)
    python tools/benchmark.py --configs cifar_vit cifar_swin --precisions float32 --jit xla
    python tools/benchmark.py --configs vit_tiny --batch 16 --rounds 5 --json vit_tiny.json
    python tools/benchmark.py --impls tfvit                          # tfvit only

keras-hub is the optional extra ``pip install -e .[bench]`` (keras-hub 0.32.0); without it the
benchmark runs tfvit alone and says so.

Configurations (``--configs``) are tfvit registry models; keras-hub's model is built from the same
numbers (``keras_hub_arguments``):

    cifar_vit   vit_cifar_patch4_32            32x32x3, 10 classes     default batch 128
    cifar_swin  swin_cifar_patch2_window4_32   32x32x3, 10 classes     default batch 128
    vit_tiny    vit_tiny_patch16_224           224x224x3, 1000 classes default batch 32
    swin_tiny   swin_tiny_patch4_window7_224   224x224x3, 1000 classes default batch 32

ViT: patch size, width (hidden_dim), depth (num_layers), heads, MLP width (int(width * mlp_ratio)),
class token, qkv bias and LayerNorm epsilon map one to one; keras-hub's backbone ends in the final
LayerNorm, and ``keras_hub.models.ViTImageClassifier`` adds the same head as tfvit's (class token,
or "gap" mean pooling, then Dense(num_classes)). Swin: patch size, embed_dim, depths, heads, window,
MLP ratio, qkv bias (LayerNorm epsilon 1e-5, fixed in keras-hub) and
``SwinTransformerImageClassifier`` (mean pooling, Dense). Both heads are float32 logits, as tfvit's.
Dropout, attention dropout and stochastic depth are 0 in both: tfvit's CIFAR and Swin registry
configurations train with drop_path_rate 0.1-0.2 and keras-hub's Swin defaults to 0.1, but
keras-hub's ViT has no stochastic depth at all, so for the same work neither model gets any. The parameter counts and MACs of both models are printed
once per configuration, so the reader sees they do the same work.

How one measurement runs: a fresh child process (``tools/measure.py``'s ``interleaved``, round by
round: tfvit, keras-hub, tfvit, keras-hub ... so a noisy machine slows both alike) sets the global
mixed-precision policy, builds the model, compiles it with AdamW(1e-3),
SparseCategoricalCrossentropy(from_logits=True) (tfvit's heads return logits; the flag follows the
configuration's ``classifier_activation``), no metrics, ``jit_compile`` on or off, and feeds one
fixed random batch held in memory to ``model.train_on_batch``. train_on_batch and not ``fit`` over
``tf.data.Dataset.from_tensors(batch).repeat()``: it runs the same compiled train function as fit
without the dataset iterator, callbacks and epoch set-up, and each call returns the loss as a NumPy
value, so a step has finished (also on a GPU) when its call returns and every timed step is one
whole step, timed alone. What it adds is Keras's Python dispatch per call, the same for both
implementations and small next to a training step of these models. The first ``--warmup`` steps (the first one traces
and compiles the train function; its time minus one step's is the "compile s" reported) are not
timed; the next ``--steps`` are. The children import keras-hub (when installed) whatever they
measure, so both pay the same import memory.

Reported per row (medians over ``--rounds``): images/s and ms/step; the tfvit/keras-hub ratio (the
median of the per-round ratios, each from a pair measured one after the other); peak resident set
size of the child during the timed steps (psutil, 5 ms sampling; on a GPU also the device's peak
allocation, columns added); achieved GFLOP/s = images/s x 3 x 2 x MACs per image (forward and
backward ~ 3 forward passes, 2 FLOPs per multiply-add), with the MACs that ``tfvit.stats`` counts
on tfvit's model used for both implementations (they do the same work: the keras-hub count is
printed beside it); and that rate as a fraction of the measured matmul peak of the row's compute
dtype (float32 rows: the float32 peak; mixed_bfloat16 rows: the bfloat16 peak). The peak is the
best rate of a ``--matmul-size`` square matmul under tf.function with and without XLA (best of
``--matmul-repeats`` calls), measured in its own child in every round; the best over rounds is the
peak (a busy moment only ever lowers a rate). MACs count matrix products only
(attention included), not normalisation, softmax or the optimizer update, so the fraction is a
lower bound on how busy the machine is.
"""

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure import interleaved  # noqa: E402

# CLI name -> (tfvit registry name, default batch size)
CONFIGS = {
    "cifar_vit": ("vit_cifar_patch4_32", 128),
    "cifar_swin": ("swin_cifar_patch2_window4_32", 128),
    "vit_tiny": ("vit_tiny_patch16_224", 32),
    "swin_tiny": ("swin_tiny_patch4_window7_224", 32),
}
IMPLS = ("tfvit", "keras_hub")
IMPL_LABEL = {"tfvit": "tfvit", "keras_hub": "keras-hub"}
PRECISIONS = ("float32", "mixed_bfloat16")
JIT_MODES = ("xla", "no-xla")
COMPUTE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
MATMUL_DTYPES = ("float32", "bfloat16")
KERAS_HUB_VERSION = "0.32.0"
# What both implementations train without: see the module docstring.
TFVIT_OVERRIDES = dict(drop_path_rate=0.0, dropout=0.0, attention_dropout=0.0)
MISSING = "—"


# ---------------------------------------------------------------------------------------------
# Pure parts: configuration mapping, FLOP formula, summary and table.


def keras_hub_available():
    return importlib.util.find_spec("keras_hub") is not None


def tfvit_config(registry_name):
    """(family, constructor arguments) of a tfvit registry model, with the benchmark's overrides."""
    sys.path.insert(0, ROOT)
    from tfvit.models import SwinTransformer, VisionTransformer, model_config

    model_class, _, config = model_config(registry_name)
    config.update(TFVIT_OVERRIDES)
    family = {VisionTransformer: "vit", SwinTransformer: "swin"}.get(model_class)
    if family is None:
        raise ValueError(f"{registry_name}: only ViT and Swin configurations have a keras-hub counterpart.")
    return family, config


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def from_logits(config):
    """The loss's ``from_logits`` for a tfvit configuration's ``classifier_activation``."""
    activation = config.get("classifier_activation")
    if activation in (None, "linear"):
        return True
    if activation == "softmax":
        return False
    raise ValueError(f"classifier_activation={activation!r}: the benchmark's loss takes logits or softmax.")


def keras_hub_arguments(registry_name):
    """The keras-hub model equal to a tfvit configuration.

    Returns (family, backbone keyword arguments, classifier keyword arguments) for
    ``keras_hub.models.ViTBackbone`` + ``ViTImageClassifier`` (family "vit") or
    ``SwinTransformerBackbone`` + ``SwinTransformerImageClassifier`` ("swin"). Raises ValueError for
    what keras-hub cannot express the same way.
    """
    family, c = tfvit_config(registry_name)
    image = _pair(c.get("image_size", 224))
    patch = _pair(c.get("patch_size", 16 if family == "vit" else 4))
    channels = c.get("in_channels", 3)
    num_classes = c.get("num_classes", 1000)
    if not num_classes:
        raise ValueError(f"{registry_name}: num_classes=0 (no head) is not benchmarked.")
    classifier = dict(num_classes=num_classes, activation=c.get("classifier_activation"), head_dtype="float32")
    if family == "vit":
        if c.get("attention", "global") != "global":
            raise ValueError(f"{registry_name}: attention={c['attention']!r} has no keras-hub counterpart.")
        if not c.get("qkv_bias", True):
            # keras-hub's use_mha_bias drops the output projection's bias too; tfvit keeps it.
            raise ValueError(f"{registry_name}: qkv_bias=False has no exact keras-hub counterpart.")
        class_token, pooling = c.get("class_token", True), c.get("pooling", "token")
        if pooling == "token" and class_token:
            hub_pooling = "token"
        elif pooling == "mean" and not class_token:
            hub_pooling = "gap"
        else:
            # keras-hub's "gap" would average the class token with the patch tokens.
            raise ValueError(f"{registry_name}: class_token={class_token}, pooling={pooling!r} has no keras-hub "
                             f"counterpart.")
        embed_dim = c.get("embed_dim", 768)
        backbone = dict(
            image_shape=(*image, channels), patch_size=patch, num_layers=c.get("depth", 12),
            num_heads=c.get("num_heads", 12), hidden_dim=embed_dim, mlp_dim=int(embed_dim * c.get("mlp_ratio", 4.0)),
            dropout_rate=0.0, attention_dropout=0.0, layer_norm_epsilon=c.get("norm_epsilon", 1e-6),
            use_mha_bias=True, use_mlp_bias=True, use_class_token=class_token, use_patch_bias=True,
        )
        classifier.update(pooling=hub_pooling, dropout=0.0)
        return family, backbone, classifier
    if patch[0] != patch[1]:
        raise ValueError(f"{registry_name}: keras-hub's Swin takes a square patch, not {patch}.")
    if c.get("norm_epsilon", 1e-5) != 1e-5:
        raise ValueError(f"{registry_name}: keras-hub's Swin fixes the LayerNorm epsilon at 1e-5.")
    backbone = dict(
        image_shape=(*image, channels), embed_dim=c.get("embed_dim", 96), depths=tuple(c.get("depths", (2, 2, 6, 2))),
        num_heads=tuple(c.get("num_heads", (3, 6, 12, 24))), window_size=c.get("window_size", 7), patch_size=patch[0],
        mlp_ratio=c.get("mlp_ratio", 4.0), qkv_bias=c.get("qkv_bias", True), dropout_rate=0.0,
        attention_dropout=0.0, drop_path=0.0, patch_norm=True,
    )
    classifier.update(dropout=0.0)
    return family, backbone, classifier


def build_tfvit(registry_name):
    sys.path.insert(0, ROOT)
    import tfvit

    return tfvit.create_model(registry_name, **TFVIT_OVERRIDES)


def build_keras_hub(registry_name):
    import keras_hub

    family, backbone_args, classifier_args = keras_hub_arguments(registry_name)
    if family == "vit":
        backbone = keras_hub.models.ViTBackbone(**backbone_args)
        return keras_hub.models.ViTImageClassifier(backbone, **classifier_args)
    backbone = keras_hub.models.SwinTransformerBackbone(**backbone_args)
    return keras_hub.models.SwinTransformerImageClassifier(backbone, **classifier_args)


def build(impl, registry_name):
    return build_tfvit(registry_name) if impl == "tfvit" else build_keras_hub(registry_name)


def train_flops_per_s(images_per_s, macs_per_image):
    """Achieved training FLOP/s: forward + backward ~ 3 forward passes, 2 FLOPs per multiply-add."""
    return images_per_s * 3 * 2 * macs_per_image


def matmul_flops(size):
    """FLOPs of one (size x size) @ (size x size) product."""
    return 2 * size ** 3


def peak_gflops(matmul_runs):
    """{dtype: GFLOP/s}: per dtype, the best rate with or without XLA in any round.

    The best and not a median: a peak is what the machine can do, and on a shared machine a busy
    moment only ever lowers a measured rate.
    """
    peaks = {}
    for dtype in MATMUL_DTYPES:
        rates = [run[f"{dtype}/{jit}"] for run in matmul_runs for jit in JIT_MODES if f"{dtype}/{jit}" in run]
        if rates:
            peaks[dtype] = max(rates)
    return peaks


def _ok(runs):
    return [r for r in runs if "error" not in r]


def summarize(results, macs, peaks):
    """Rows of the table from the children's results.

    results: {(config, precision, jit, impl): [per-round dicts with images_per_s, ms_per_step,
    peak_mb (and device_peak_mb, compile_s) or {"error": ...}]}; macs: {config: MACs per image};
    peaks: {"float32" / "bfloat16": GFLOP/s}. Values an implementation did not give are None.
    """
    rows = []
    keys = sorted({k[:3] for k in results}, key=lambda k: (list(CONFIGS).index(k[0]) if k[0] in CONFIGS else 99,
                                                         PRECISIONS.index(k[1]), JIT_MODES.index(k[2])))
    for config, precision, jit in keys:
        row = dict(config=config, precision=precision, jit=jit)
        peak = peaks.get(COMPUTE_DTYPE[precision])
        for impl in IMPLS:
            runs = results.get((config, precision, jit, impl))
            good = _ok(runs or [])
            row[f"{impl}_measured"] = runs is not None
            row[f"{impl}_error"] = next((r["error"] for r in (runs or []) if "error" in r), None)
            for field in ("images_per_s", "ms_per_step", "peak_mb", "device_peak_mb", "compile_s"):
                values = [r[field] for r in good if r.get(field) is not None]
                row[f"{impl}_{field}"] = statistics.median(values) if values else None
            ips = row[f"{impl}_images_per_s"]
            flops = train_flops_per_s(ips, macs[config]) if ips is not None and macs.get(config) else None
            row[f"{impl}_gflops"] = flops / 1e9 if flops is not None else None
            row[f"{impl}_peak_fraction"] = flops / 1e9 / peak if flops is not None and peak else None
        pairs = list(zip(results.get((config, precision, jit, "tfvit"), []),
                         results.get((config, precision, jit, "keras_hub"), [])))
        ratios = [a["images_per_s"] / b["images_per_s"] for a, b in pairs if "error" not in a and "error" not in b]
        row["ratio"] = statistics.median(ratios) if ratios else None
        rows.append(row)
    return rows


def _fmt(value, spec, missing=MISSING):
    return missing if value is None else format(value, spec)


def format_table(rows):
    """Markdown table of ``summarize``'s rows; device-memory columns only when a row has them."""
    device = any(r.get(f"{i}_device_peak_mb") is not None for r in rows for i in IMPLS)
    header = ["config", "precision", "XLA", "tfvit img/s", "keras-hub img/s", "tfvit/keras-hub", "tfvit ms/step",
              "tfvit peak MB", "keras-hub peak MB"]
    if device:
        header += ["tfvit device MB", "keras-hub device MB"]
    header += ["tfvit GFLOP/s", "tfvit fraction of peak", "keras-hub fraction of peak"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(row, impl, field, spec):
        if not row[f"{impl}_measured"]:
            return MISSING
        if row[f"{impl}_{field}"] is None and row[f"{impl}_error"]:
            return "failed"
        return _fmt(row[f"{impl}_{field}"], spec)

    for r in rows:
        cells = [r["config"], r["precision"], "yes" if r["jit"] == "xla" else "no",
                 cell(r, "tfvit", "images_per_s", ".1f"), cell(r, "keras_hub", "images_per_s", ".1f"),
                 _fmt(r["ratio"], ".2f"), cell(r, "tfvit", "ms_per_step", ".1f"),
                 cell(r, "tfvit", "peak_mb", ".0f"), cell(r, "keras_hub", "peak_mb", ".0f")]
        if device:
            cells += [cell(r, "tfvit", "device_peak_mb", ".0f"), cell(r, "keras_hub", "device_peak_mb", ".0f")]
        cells += [cell(r, "tfvit", "gflops", ".1f"), cell(r, "tfvit", "peak_fraction", ".3f"),
                  cell(r, "keras_hub", "peak_fraction", ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_compile_table(rows):
    header = ["config", "precision", "XLA", "tfvit compile s", "keras-hub compile s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(f"| {r['config']} | {r['precision']} | {'yes' if r['jit'] == 'xla' else 'no'} "
                     f"| {_fmt(r['tfvit_compile_s'], '.1f')} | {_fmt(r['keras_hub_compile_s'], '.1f')} |")
    return "\n".join(lines)


def describe_info(config, info, batch):
    """One config's parameter / MAC comparison, as printed before the table."""
    name, _ = CONFIGS[config]
    h, w, c = info["input_shape"]
    lines = [f"{config} = {name}: {h}x{w}x{c}, {info['num_classes']} classes, batch {batch}, "
             f"{info['tfvit_macs'] / 1e9:.4f} GMACs/image (tfvit.stats of the tfvit model; "
             f"{info['tfvit_macs'] * 6 * batch / 1e9:.1f} GFLOP per training step)"]
    t = info["tfvit_params"]
    if "keras_hub_params" not in info:
        lines.append(f"  params: tfvit {t:,}; keras-hub not built: {info.get('keras_hub_error', 'not requested')}")
        return "\n".join(lines)
    k = info["keras_hub_params"]
    verdict = "equal" if t == k else f"differ by {t - k:+,} (tfvit - keras-hub)"
    lines.append(f"  params: tfvit {t:,} / keras-hub {k:,}: {verdict}; trainable {info['tfvit_trainable']:,} / "
                 f"{info['keras_hub_trainable']:,}")
    if info.get("keras_hub_macs") is not None:
        same = "same" if info["keras_hub_macs"] == info["tfvit_macs"] else "DIFFERENT"
        lines.append(f"  MACs/image counted on keras-hub's model: {info['keras_hub_macs']:,} vs tfvit "
                     f"{info['tfvit_macs']:,} ({same})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Children (each in a fresh process).


def _import_keras_hub_if_installed():
    # Both implementations' children import it, so that neither pays alone for its resident memory.
    if keras_hub_available():
        import keras_hub  # noqa: F401


def child_info(args):
    """Both models in float32: parameter counts and MACs per image."""
    sys.path.insert(0, ROOT)
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
    synthetic batch (x, y) of ``batch`` images. Returns (model, x, y). Also used by tools/op_profile.py."""
    sys.path.insert(0, ROOT)
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
    import numpy as np
    import tensorflow as tf

    from measure import PeakResidentMemory, resident_mb

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


# ---------------------------------------------------------------------------------------------
# Parent.


def progress(message):
    print(message, file=sys.stderr, flush=True)


def child_command(*options):
    return [os.path.abspath(__file__), *[str(o) for o in options]]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--jit", nargs="+", default=list(JIT_MODES), choices=JIT_MODES)
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table gives medians")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps first (the first traces and compiles); at least 1")
    parser.add_argument("--batch", type=int, help="batch size (default: 128 at 32x32, 32 at 224x224)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matmul of the peak")
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    parser.add_argument("--child", choices=("train", "info", "matmul"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--jit-mode", dest="jit_mode", help=argparse.SUPPRESS)
    parser.add_argument("--with-keras-hub", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step compiles.")
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        args.jit = args.jit_mode
        function = dict(train=child_train, info=child_info, matmul=child_matmul)[args.child]
        return run_child(function, args)

    impls = list(dict.fromkeys(args.impls))
    if "keras_hub" in impls and not keras_hub_available():
        message = (f"keras-hub is not installed (pip install keras-hub=={KERAS_HUB_VERSION}, or the [bench] extra): "
                   f"measuring tfvit only.")
        progress(message)
        print(message + "\n")
        impls = [i for i in impls if i != "keras_hub"]
    if not impls:
        raise SystemExit("nothing to measure.")
    batches = {config: args.batch or CONFIGS[config][1] for config in args.configs}

    progress(f"model sizes: {len(args.configs)} child(ren)")
    info_commands = [(config, child_command("--child", "info", "--config", config,
                                            *(["--with-keras-hub"] if "keras_hub" in impls else [])))
                     for config in args.configs]
    info = {config: runs[0] for config, runs in interleaved(info_commands, 1).items()}
    keras_hub_configs = set()
    for config in args.configs:
        if "error" in info[config]:
            raise SystemExit(f"{config}: could not build the tfvit model: {info[config]['error']}")
        print(describe_info(config, info[config], batches[config]))
        if "keras_hub" in impls and "keras_hub_params" in info[config]:
            keras_hub_configs.add(config)
        elif "keras_hub" in impls:
            print(f"  keras-hub cannot build {config}: measuring tfvit only for it.")
    print(flush=True)

    commands = [("matmul", child_command("--child", "matmul", "--matmul-size", args.matmul_size,
                                         "--matmul-repeats", args.matmul_repeats))]
    for config in args.configs:
        for precision in args.precisions:
            for jit in args.jit:
                for impl in impls:
                    if impl == "keras_hub" and config not in keras_hub_configs:
                        continue
                    commands.append(((config, precision, jit, impl), child_command(
                        "--child", "train", "--config", config, "--impl", impl, "--precision", precision,
                        "--jit-mode", jit, "--batch", batches[config], "--steps", args.steps,
                        "--warmup", args.warmup)))
    progress(f"{len(commands)} children x {args.rounds} round(s), order per round: "
             + ", ".join("/".join(k) if isinstance(k, tuple) else k for k, _ in commands))
    started = time.perf_counter()
    results = interleaved(commands, args.rounds)
    progress(f"done in {time.perf_counter() - started:.0f} s")

    matmul_runs = _ok(results.pop("matmul"))
    peaks = peak_gflops(matmul_runs) if matmul_runs else {}
    macs = {config: info[config]["tfvit_macs"] for config in args.configs}
    rows = summarize(results, macs, peaks)

    device = next((r["device"] for runs in results.values() for r in runs if "device" in r), "unknown")
    print(f"Training throughput on {device}, medians over {args.rounds} interleaved round(s); {args.warmup} "
          f"untimed then {args.steps} timed train_on_batch steps; batch "
          + ", ".join(f"{c} {b}" for c, b in batches.items()) + ".\n")
    print(format_table(rows))
    print("\nFirst-step time minus one step (tracing + compilation), seconds:\n")
    print(format_compile_table(rows))
    print(f"\nMeasured matmul peak ({args.matmul_size}x{args.matmul_size}, best of {args.matmul_repeats} calls, "
          f"XLA or not, over {len(matmul_runs)} round(s)): "
          + (", ".join(f"{dtype} {value:.1f} GFLOP/s" for dtype, value in peaks.items()) or "not measured")
          + ". GFLOP/s = images/s x 6 x MACs/image (tfvit.stats), the same MACs for both implementations.")
    if any((r[f"{i}_peak_fraction"] or 0) > 1 for r in rows for i in IMPLS):
        print("\nA fraction of peak above 1 means the matmul peak was measured while the machine was busier than "
              "during that row's steps (another process on a shared CPU): rerun with more rounds on a quiet machine.")
    for key, runs in results.items():
        for run in runs:
            if "error" in run:
                print(f"\n{'/'.join(key)} failed: {run['error']}")
                break
            if not run.get("finite_loss", True):
                print(f"\n{'/'.join(key)}: non-finite loss {run['loss']}")
                break

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(
                arguments={k: v for k, v in vars(args).items() if not k.startswith("child") and k not in (
                    "config", "impl", "precision", "jit_mode", "with_keras_hub")},
                impls=impls, batches=batches, models=info, matmul=matmul_runs, matmul_peak_gflops=peaks,
                results=[dict(config=k[0], precision=k[1], jit=k[2], impl=k[3], runs=v) for k, v in results.items()],
                rows=rows,
            ), f, indent=1)
        progress(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
