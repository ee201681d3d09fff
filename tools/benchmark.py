"""Training throughput of tfvit's ViT and Swin against keras-hub's ViTBackbone / SwinTransformerBackbone
and against PyTorch + timm's VisionTransformer / SwinTransformer.

For every (configuration, precision, XLA on/off) the benchmark trains each implementation of the
same architecture on synthetic data and reports images/s, ms/step, peak resident memory, achieved
FLOP/s and its fraction of a measured matmul peak. From the repository root:

    python -m tools.benchmark                                        # everything (long)
    python -m tools.benchmark --configs cifar_vit cifar_swin --precisions float32 --jit xla
    python -m tools.benchmark --configs vit_tiny --batch 16 --rounds 5 --json vit_tiny.json
    python -m tools.benchmark --impls tfvit                          # tfvit only
    python -m tools.benchmark --configs cifar_vit --impls tfvit timm --precisions float32 --jit no-xla

keras-hub is the optional extra ``pip install -e .[bench]`` (keras-hub 0.32.0); timm needs PyTorch and
timm installed. Without either, the benchmark measures the others and says so.

timm rows run PyTorch in the setting that matches the row (``tools/benchmark_torch.py``):
``--precisions float32`` is eager float32, ``mixed_bfloat16`` is bfloat16 ``torch.autocast``;
``--jit no-xla`` is eager PyTorch, ``--jit xla`` is ``torch.compile`` of the model. So the "XLA"
column reads "compiled whole" for every implementation, and timm's "compile s" is torch.compile's.

Configurations (``--configs``) are tfvit registry models; keras-hub's and timm's models are built from
the same numbers (``tools/benchmark_config.py`` says how each setting maps, and why dropout, attention
dropout and stochastic depth are 0 in all):

    cifar_vit   vit_cifar_patch4_32            32x32x3, 10 classes     default batch 128
    cifar_swin  swin_cifar_patch2_window4_32   32x32x3, 10 classes     default batch 128
    vit_tiny    vit_tiny_patch16_224           224x224x3, 1000 classes default batch 32
    swin_tiny   swin_tiny_patch4_window7_224   224x224x3, 1000 classes default batch 32

The parameter counts (and MACs of the Keras models) are printed once per configuration, so the reader
sees they do the same work.

How one measurement runs: a fresh child process (``python -m tools.benchmark_child``, run by
``tools/measure.py``'s ``interleaved`` round by round: tfvit, keras-hub, timm, tfvit, keras-hub,
timm ... so a noisy machine slows all alike) builds the model, compiles it with AdamW(1e-3) and the
cross-entropy, ``jit_compile`` on or off, and times ``model.train_on_batch`` on one fixed random
batch held in memory (``tools/benchmark_child.py`` says why train_on_batch and not ``fit``). The
first ``--warmup`` steps (the first one traces and compiles the train function; its time minus one
step's is the "compile s" reported) are not timed; the next ``--steps`` are.

Reported per row (medians over ``--rounds``): images/s and ms/step; the tfvit/keras-hub and
tfvit/timm ratios (the median of the per-round ratios, each from a pair measured in the same round;
timm's columns only when timm was measured); peak resident set
size of the child during the timed steps (``tfvit.training.memory``: Linux's exact high-water mark
where it can be reset, else psutil sampling; on a GPU also the device's peak allocation, columns
added); achieved GFLOP/s = images/s x 3 x 2 x MACs per image (forward and backward ~ 3 forward
passes, 2 FLOPs per multiply-add), with the MACs that ``tfvit.stats`` counts on tfvit's model used
for all implementations (they do the same work: the keras-hub count is printed beside it); and
that rate as a fraction of the measured matmul peak of the row's compute dtype (float32 rows: the
float32 peak; mixed_bfloat16 rows: the bfloat16 peak). The peak is the best rate of a
``--matmul-size`` square matmul under tf.function with and without XLA (best of
``--matmul-repeats`` calls), measured in its own child in every round; the best over rounds is the
peak (a busy moment only ever lowers a rate). MACs count matrix products only (attention included),
not normalisation, softmax or the optimizer update, so the fraction is a lower bound on how busy
the machine is.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.benchmark_config import (  # noqa: E402
    CONFIGS, IMPLS, JIT_MODES, KERAS_HUB_VERSION, MATMUL_DTYPES, PRECISIONS, keras_hub_available, timm_available,
)
from tools.measure import interleaved, module_command  # noqa: E402

COMPUTE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
MISSING = "—"


# ---------------------------------------------------------------------------------------------
# Pure parts: FLOP rates, summary and tables.


def train_flops_per_s(images_per_s, macs_per_image):
    """Achieved training FLOP/s: forward + backward ~ 3 forward passes, 2 FLOPs per multiply-add."""
    return images_per_s * 3 * 2 * macs_per_image


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


def paired_ratio(results, key, impl, other):
    """Median over rounds of impl's images/s over other's, each ratio from one round's pair; None without pairs."""
    pairs = zip(results.get((*key, impl), []), results.get((*key, other), []))
    ratios = [a["images_per_s"] / b["images_per_s"] for a, b in pairs if "error" not in a and "error" not in b]
    return statistics.median(ratios) if ratios else None


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
        row["ratio"] = paired_ratio(results, (config, precision, jit), "tfvit", "keras_hub")
        row["timm_ratio"] = paired_ratio(results, (config, precision, jit), "tfvit", "timm")
        rows.append(row)
    return rows


def _fmt(value, spec, missing=MISSING):
    return missing if value is None else format(value, spec)


def _with_timm(rows):
    return any(r.get("timm_measured") for r in rows)


def format_table(rows):
    """Markdown table of ``summarize``'s rows; device-memory columns only when a row has them, timm's
    columns only when a row measured timm (its "XLA" is then torch.compile)."""
    device = any(r.get(f"{i}_device_peak_mb") is not None for r in rows for i in IMPLS)
    timm = _with_timm(rows)
    header = ["config", "precision", "XLA / torch.compile" if timm else "XLA", "tfvit img/s", "keras-hub img/s"]
    header += ["timm img/s"] if timm else []
    header += ["tfvit/keras-hub"] + (["tfvit/timm"] if timm else [])
    header += ["tfvit ms/step", "tfvit peak MB", "keras-hub peak MB"] + (["timm peak MB"] if timm else [])
    if device:
        header += ["tfvit device MB", "keras-hub device MB"] + (["timm device MB"] if timm else [])
    header += ["tfvit GFLOP/s", "tfvit fraction of peak", "keras-hub fraction of peak"]
    header += ["timm fraction of peak"] if timm else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(row, impl, field, spec):
        if not row[f"{impl}_measured"]:
            return MISSING
        if row[f"{impl}_{field}"] is None and row[f"{impl}_error"]:
            return "failed"
        return _fmt(row[f"{impl}_{field}"], spec)

    for r in rows:
        cells = [r["config"], r["precision"], "yes" if r["jit"] == "xla" else "no",
                 cell(r, "tfvit", "images_per_s", ".1f"), cell(r, "keras_hub", "images_per_s", ".1f")]
        cells += [cell(r, "timm", "images_per_s", ".1f")] if timm else []
        cells += [_fmt(r["ratio"], ".2f")] + ([_fmt(r["timm_ratio"], ".2f")] if timm else [])
        cells += [cell(r, "tfvit", "ms_per_step", ".1f"), cell(r, "tfvit", "peak_mb", ".0f"),
                  cell(r, "keras_hub", "peak_mb", ".0f")] + ([cell(r, "timm", "peak_mb", ".0f")] if timm else [])
        if device:
            cells += [cell(r, "tfvit", "device_peak_mb", ".0f"), cell(r, "keras_hub", "device_peak_mb", ".0f")]
            cells += [cell(r, "timm", "device_peak_mb", ".0f")] if timm else []
        cells += [cell(r, "tfvit", "gflops", ".1f"), cell(r, "tfvit", "peak_fraction", ".3f"),
                  cell(r, "keras_hub", "peak_fraction", ".3f")]
        cells += [cell(r, "timm", "peak_fraction", ".3f")] if timm else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_compile_table(rows):
    timm = _with_timm(rows)
    impls = ["tfvit", "keras_hub"] + (["timm"] if timm else [])
    header = ["config", "precision", "XLA / torch.compile" if timm else "XLA"]
    header += [f"{impl.replace('_', '-')} compile s" for impl in impls]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["config"], r["precision"], "yes" if r["jit"] == "xla" else "no"]
        cells += [_fmt(r.get(f"{impl}_compile_s"), ".1f") for impl in impls]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_info(config, info, batch):
    """One config's parameter / MAC comparison, as printed before the table."""
    name, _ = CONFIGS[config]
    h, w, c = info["input_shape"]
    lines = [f"{config} = {name}: {h}x{w}x{c}, {info['num_classes']} classes, batch {batch}, "
             f"{info['tfvit_macs'] / 1e9:.4f} GMACs/image (tfvit.stats of the tfvit model; "
             f"{info['tfvit_macs'] * 6 * batch / 1e9:.1f} GFLOP per training step)"]
    t = info["tfvit_params"]
    if "timm_params" in info:
        m = info["timm_params"]
        verdict = "equal" if t == m else f"differ by {t - m:+,} (tfvit - timm)"
        lines.append(f"  params: tfvit {t:,} / timm {m:,}: {verdict}")
    elif "timm_error" in info:
        lines.append(f"  timm not built: {info['timm_error']}")
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
# Parent.


def progress(message):
    print(message, file=sys.stderr, flush=True)


def child_command(kind, *options):
    return module_command("tools.benchmark_child", kind, *options)


def measurement_commands(args, impls, batches, keras_hub_configs, timm_arguments=None):
    """One round's ``(key, child command)`` pairs, in order: the matmul peak, then every training
    measurement, keyed (config, precision, jit, impl); keras-hub only for ``keras_hub_configs``, timm
    only for the configurations of ``timm_arguments`` ({config: [family, arguments]} as the info child
    gave them: passed on, so that timm's child imports no TensorFlow)."""
    timm_arguments = timm_arguments or {}
    commands = [("matmul", child_command("matmul", "--matmul-size", args.matmul_size,
                                         "--matmul-repeats", args.matmul_repeats))]
    for config in args.configs:
        for precision in args.precisions:
            for jit in args.jit:
                for impl in impls:
                    if impl == "keras_hub" and config not in keras_hub_configs:
                        continue
                    if impl == "timm" and config not in timm_arguments:
                        continue
                    extra = ["--timm-arguments", json.dumps(timm_arguments[config])] if impl == "timm" else []
                    commands.append(((config, precision, jit, impl), child_command(
                        "train", "--config", config, "--impl", impl, "--precision", precision,
                        "--jit", jit, "--batch", batches[config], "--steps", args.steps,
                        "--warmup", args.warmup, *extra)))
    return commands


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
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step compiles.")
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    impls = list(dict.fromkeys(args.impls))
    if "keras_hub" in impls and not keras_hub_available():
        message = (f"keras-hub is not installed (pip install keras-hub=={KERAS_HUB_VERSION}, or the [bench] extra): "
                   f"measuring tfvit only.")
        progress(message)
        print(message + "\n")
        impls = [i for i in impls if i != "keras_hub"]
    if "timm" in impls and not timm_available():
        message = "PyTorch or timm is not installed (pip install torch timm): skipping timm."
        progress(message)
        print(message + "\n")
        impls = [i for i in impls if i != "timm"]
    if not impls:
        raise SystemExit("nothing to measure.")
    batches = {config: args.batch or CONFIGS[config][1] for config in args.configs}

    progress(f"model sizes: {len(args.configs)} child(ren)")
    info_commands = [(config, child_command("info", "--config", config,
                                            *(["--with-keras-hub"] if "keras_hub" in impls else []),
                                            *(["--with-timm"] if "timm" in impls else [])))
                     for config in args.configs]
    info = {config: runs[0] for config, runs in interleaved(info_commands, 1).items()}
    keras_hub_configs, timm_arguments = set(), {}
    for config in args.configs:
        if "error" in info[config]:
            raise SystemExit(f"{config}: could not build the tfvit model: {info[config]['error']}")
        print(describe_info(config, info[config], batches[config]))
        if "keras_hub" in impls and "keras_hub_params" in info[config]:
            keras_hub_configs.add(config)
        elif "keras_hub" in impls:
            print(f"  keras-hub cannot build {config}: not measuring keras-hub for it.")
        if "timm" in impls and "timm_params" in info[config]:
            timm_arguments[config] = info[config]["timm_arguments"]
        elif "timm" in impls:
            print(f"  timm cannot build {config}: not measuring timm for it.")
    print(flush=True)

    commands = measurement_commands(args, impls, batches, keras_hub_configs, timm_arguments)
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
          f"untimed then {args.steps} timed train_on_batch steps (timm: the same PyTorch step); batch "
          + ", ".join(f"{c} {b}" for c, b in batches.items()) + ".\n")
    print(format_table(rows))
    print("\nFirst-step time minus one step (tracing + compilation), seconds:\n")
    print(format_compile_table(rows))
    print(f"\nMeasured matmul peak ({args.matmul_size}x{args.matmul_size}, best of {args.matmul_repeats} calls, "
          f"XLA or not, TensorFlow's, over {len(matmul_runs)} round(s)): "
          + (", ".join(f"{dtype} {value:.1f} GFLOP/s" for dtype, value in peaks.items()) or "not measured")
          + ". GFLOP/s = images/s x 6 x MACs/image (tfvit.stats), the same MACs for all implementations.")
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

    timm_runs = [r for k, runs in results.items() if k[3] == "timm" for r in _ok(runs)]
    if timm_runs:
        print(f"\ntimm: torch {timm_runs[0].get('torch_version')}, {os.cpu_count()} threads; rows with XLA ran "
              f"torch.compile, mixed_bfloat16 rows bfloat16 autocast"
              + ("; torchvision is not installed, so timm was imported with an empty stand-in for it (ViT and Swin "
                 "do not use it)" if any(r.get("torchvision_stub") for r in timm_runs) else "") + ".")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(
                arguments=vars(args),
                impls=impls, batches=batches, models=info, matmul=matmul_runs, matmul_peak_gflops=peaks,
                results=[dict(config=k[0], precision=k[1], jit=k[2], impl=k[3], runs=v) for k, v in results.items()],
                rows=rows,
            ), f, indent=1)
        progress(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
