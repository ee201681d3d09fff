"""Where a training step's time goes, by TensorFlow op type: tfvit or keras-hub, any benchmark config.

Builds the model exactly as ``tools/benchmark_child.py``'s training child does (same configuration
mapping, AdamW, ``train_on_batch`` on one synthetic batch), runs ``--warmup`` steps, then records
``--steps`` steps with the TensorFlow profiler and sums the duration of every op event on the
executor's compute threads, by op type (``_MklMatMul``, ``Mul``, ``Cast``...):

    python -m tools.op_profile --config cifar_vit                       # tfvit, mixed_bfloat16, no XLA
    python -m tools.op_profile --config cifar_vit --impl keras_hub
    python -m tools.op_profile --config cifar_swin --precision float32 --by-name Mul Cast

"Op time" is summed over the executor's threads: on 2 inter-op threads it exceeds wall time, and the
shares, not the milliseconds, are what compare across runs. Under XLA the step is one compiled
cluster and the table says little; this tool is for the TensorFlow executor's own kernels.
The element-wise XLA clusters that tfvit nests in the step (``tfvit.layers.xla_cluster``) show as one
row, "XLA clusters": their launch, fused loops and the wait for the threads that help them, counted
on the executor's threads. ``--logdir`` keeps the trace for TensorBoard's profile plugin. TensorFlow
backend only.
"""

import argparse
import collections
import glob
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.benchmark_child import training_setup  # noqa: E402
from tools.benchmark_config import CONFIGS, IMPLS, JIT_MODES, PRECISIONS  # noqa: E402

# The executor's compute threads in the profiler's host plane; their "Process" events wrap the ops.
COMPUTE_LINE = "tf_Compute"
WRAPPER_EVENTS = {"Process"}


def op_type(event_name):
    """``scope/name:OpType`` -> ``OpType`` (events without a type keep their name)."""
    return event_name.rsplit(":", 1)[-1].strip()


XLA_CLUSTERS = "XLA clusters"
# What the executor and the XLA runtime record on the executor's threads for a nested cluster (tfvit's
# element-wise clusters): the launch op, which runs asynchronously (ProcessAsync; no other op in these
# steps does), its fused loops and products, and the wait for the threads that help it.
_XLA_RUNTIME_EVENTS = {"ExecutorState::ProcessAsync::Start", "ExecutorState::ProcessAsync::Done",
                       "ExecuteAsyncOnStream", "BlockUntilReady"}


def is_xla_event(name):
    name = name.strip()
    return name in _XLA_RUNTIME_EVENTS or "fusion" in name or name.startswith(("dot", "end: "))


def outermost(events):
    """The events not nested inside an earlier one on the same line (a kernel's own sub-events, an
    XLA cluster's fused loops), in time order."""
    kept, end = [], -1
    for event in sorted(events, key=lambda e: e.offset_ps):
        if event.offset_ps >= end:
            kept.append(event)
            end = event.offset_ps + event.duration_ps
    return kept


def op_times(xspace, by_name_types=()):
    """Per-op-type total durations in ms from a profiler ``XSpace``, and per-name totals for the op
    types in ``by_name_types`` (layer indices folded: ``blocks.3`` -> ``blocks.N``). Only the
    outermost events of a line count; those of nested XLA clusters are summed as ``XLA clusters``."""
    by_type, by_name = collections.Counter(), collections.Counter()
    for plane in xspace.planes:
        for line in plane.lines:
            if not line.name.startswith(COMPUTE_LINE):
                continue
            events = [e for e in line.events if op_type(plane.event_metadata[e.metadata_id].name) not in WRAPPER_EVENTS]
            for event in outermost(events):
                name = plane.event_metadata[event.metadata_id].name
                kind = XLA_CLUSTERS if is_xla_event(name) else op_type(name)
                ms = event.duration_ps / 1e9
                by_type[kind] += ms
                if kind in by_name_types:
                    by_name[re.sub(r"\.\d+/", ".N/", name)] += ms
    return by_type, by_name


def format_shares(counter, steps, top):
    total = sum(counter.values())
    lines = [f"{'':44s} {'ms/step':>9s} {'share':>7s}", f"{'all ops':44s} {total / steps:9.1f} {100.0:6.1f}%"]
    for name, ms in counter.most_common(top):
        lines.append(f"{name[-44:]:44s} {ms / steps:9.1f} {100 * ms / total:6.1f}%")
    return "\n".join(lines)


def load_xspace(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise SystemExit(f"no profile was written under {logdir}")
    xspace = xplane_pb2.XSpace()
    with open(max(paths, key=os.path.getmtime), "rb") as f:
        xspace.ParseFromString(f.read())
    return xspace


def profile(args):
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("op_profile reads TensorFlow's executor trace: run it with KERAS_BACKEND=tensorflow.")
    batch = args.batch or CONFIGS[args.config][1]
    model, x, y = training_setup(args.config, args.impl, args.precision, args.jit, batch)
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    tf.profiler.experimental.start(args.logdir)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    wall_ms = 1000 * (time.perf_counter() - start) / args.steps
    tf.profiler.experimental.stop()
    return wall_ms


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cifar_vit", choices=list(CONFIGS))
    parser.add_argument("--impl", default="tfvit", choices=IMPLS)
    parser.add_argument("--precision", default="mixed_bfloat16", choices=PRECISIONS)
    parser.add_argument("--jit", default="no-xla", choices=JIT_MODES)
    parser.add_argument("--batch", type=int, help="default: the benchmark's (128 at 32x32, 32 at 224x224)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first one traces)")
    parser.add_argument("--steps", type=int, default=4, help="profiled steps")
    parser.add_argument("--top", type=int, default=25, help="rows of each table")
    parser.add_argument("--by-name", nargs="*", default=[], metavar="OP_TYPE",
                        help="also list these op types by op name")
    parser.add_argument("--logdir", help="keep the trace here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        args.logdir = args.logdir or scratch
        wall_ms = profile(args)
        by_type, by_name = op_times(load_xspace(args.logdir), set(args.by_name))
    print(f"{args.config} ({args.impl}, {args.precision}, {args.jit}): {wall_ms:.1f} ms/step wall while profiled, "
          f"{args.steps} steps")
    print(format_shares(by_type, args.steps, args.top))
    if by_name:
        print()
        print(format_shares(by_name, args.steps, args.top))


if __name__ == "__main__":
    main()
