"""The PyTorch + timm peer of tools/benchmark.py: timm's model of a configuration and its measured
training step, run by ``python -m tools.benchmark_child train --impl timm ...``.

The benchmark's settings map onto PyTorch as

    --precision float32          eager float32
    --precision mixed_bfloat16   ``torch.autocast(device, dtype=torch.bfloat16)`` around the forward
                                 pass and the loss (weights, gradients and AdamW state stay float32,
                                 as under Keras's mixed_bfloat16 policy)
    --jit no-xla                 eager PyTorch
    --jit xla                    ``torch.compile(model)`` (TorchInductor; the forward and backward
                                 graphs are compiled, the optimizer step stays eager)

so each row of the table compares like with like: tfvit's whole-step XLA against a compiled timm
model, eager TensorFlow graphs against eager PyTorch.

The step: ``optimizer.zero_grad``, forward on one fixed random batch held in memory (the NHWC batch
of the Keras children, permuted once to the NCHW that timm takes), ``torch.nn.functional.cross_entropy``
on float32 logits, ``backward``, ``torch.optim.AdamW(lr=1e-3, weight_decay=0.004, eps=1e-7)`` (Keras's
AdamW defaults, so all three implementations run the same update), and ``loss.item()``, which
waits for the step as train_on_batch's NumPy loss does. Timing, warm-up, "compile s" (first step
minus one step) and peak resident memory are the Keras children's (``tfvit.training.memory``, loaded
from its file so that the child imports neither TensorFlow nor Keras: its memory is PyTorch's own).
``torch.set_num_threads(os.cpu_count())``. TorchInductor's on-disk caches are off in the child
(``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1`` unless set), so timm's "compile s" is a cold compile, as
XLA's is.

timm imports torchvision (a dependency it declares) at import time, though ViT and Swin never use
it; where torchvision does not import, ``tools.timm_import`` imports timm with a stand-in for it and
removes the stand-in afterwards, and the child says so in its result (``torchvision_stub``).
"""

import importlib.util
import json
import os
import time

from tools.benchmark_config import CONFIGS, timm_arguments
from tools.timm_import import import_timm, uses_stand_in

# (precision, jit) -> what PyTorch runs: see the module docstring.
TORCH_PRECISION = {"float32": None, "mixed_bfloat16": "bfloat16"}
TORCH_JIT = {"no-xla": "eager", "xla": "torch.compile"}


def torch_setting(precision, jit):
    """(autocast dtype name or None, compile or not) for a benchmark row's precision and jit mode."""
    return TORCH_PRECISION[precision], TORCH_JIT[jit] == "torch.compile"


def describe_setting(precision, jit):
    dtype, compiled = torch_setting(precision, jit)
    return ("torch.compile" if compiled else "eager") + (f", {dtype} autocast" if dtype else ", float32")


def build_timm(family, arguments):
    """timm's model from ``tools.benchmark_config.timm_arguments``' (family, arguments), float32."""
    import functools

    from torch import nn

    import_timm()
    arguments = dict(arguments)
    if family == "vit":
        from timm.models.vision_transformer import VisionTransformer

        epsilon = arguments.pop("norm_epsilon")
        return VisionTransformer(**arguments, norm_layer=functools.partial(nn.LayerNorm, eps=epsilon))
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(**arguments)


def count_params(model):
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


def _memory():
    """tfvit.training.memory, loaded from its file: importing the package would import TensorFlow."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("_tfvit_memory", os.path.join(root, "tfvit", "training",
                                                                                "memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_train_timm(args):
    """The ``train`` child for ``--impl timm``: prints the same JSON fields as the Keras children."""
    # Inductor's on-disk caches would make every torch.compile after the first a cache hit (2 s, not
    # ~30 s for CIFAR ViT here); XLA keeps none, so "compile s" is a cold compile for all. Set before torch loads.
    os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")
    import numpy as np
    import torch
    import torch.nn.functional as F

    memory = _memory()
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    if args.timm_arguments:
        family, arguments = json.loads(args.timm_arguments)
    else:  # run by hand: the mapping imports tfvit (and so TensorFlow) in this process
        family, arguments = timm_arguments(CONFIGS[args.config][0])
    import_timm()
    stubbed = uses_stand_in()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_timm(family, arguments).to(device).train()
    params = count_params(model)[0]
    autocast_dtype, compiled = torch_setting(args.precision, args.jit)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.004, eps=1e-7)
    forward = torch.compile(model) if compiled else model

    rng = np.random.default_rng(0)
    size = arguments["img_size"]
    x = torch.from_numpy(rng.random((args.batch, size[0], size[1], arguments["in_chans"]), dtype=np.float32))
    x = x.permute(0, 3, 1, 2).contiguous().to(device)  # NHWC -> NCHW
    y = torch.from_numpy(rng.integers(0, arguments["num_classes"], args.batch)).to(device)
    output_dtype = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=getattr(torch, autocast_dtype or "float32"),
                            enabled=autocast_dtype is not None):
            logits = forward(x)
        if not output_dtype:
            output_dtype.append(str(logits.dtype).replace("torch.", ""))
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    baseline = memory.resident_mb()
    with memory.PeakResidentMemory(baseline_mb=baseline) as warm:
        start = time.perf_counter()
        step()
        first_step_s = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_times = []
    with memory.PeakResidentMemory(baseline_mb=baseline) as peak:
        for _ in range(args.steps):
            start = time.perf_counter()
            loss = step()
            step_times.append(time.perf_counter() - start)
    elapsed = sum(step_times)
    out = dict(
        images_per_s=args.batch * args.steps / elapsed, ms_per_step=1000 * elapsed / args.steps,
        step_ms=[1000 * t for t in step_times], first_step_s=first_step_s,
        compile_s=max(first_step_s - elapsed / args.steps, 0.0), peak_mb=peak.peak_mb,
        training_mb=peak.added_mb, warmup_peak_mb=warm.peak_mb, params=params, loss=loss,
        finite_loss=bool(np.isfinite(loss)), compute_dtype=autocast_dtype or "float32",
        output_dtype=output_dtype[0], device=device.upper(), torch_setting=describe_setting(args.precision, args.jit),
        torch_version=torch.__version__, torchvision_stub=stubbed,
    )
    if device == "cuda":
        out["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(out))
