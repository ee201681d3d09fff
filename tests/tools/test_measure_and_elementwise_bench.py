"""tools/measure.py's interleaved children and a tiny run of tools/elementwise_bench.py's op timing.
Nothing here asserts a time."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"tfvit_tools_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


measure = _load("measure")
elementwise_bench = _load("elementwise_bench")

ECHO = "import json, os, sys; print('noise'); print(json.dumps({'arg': sys.argv[1], 'env': os.environ.get('TFVIT_X')}))"


def test_interleaved_runs_round_by_round_and_passes_each_childs_environment():
    commands = [("a", ["-c", ECHO, "1"]), ("b", ["-c", ECHO, "2"], {"TFVIT_X": "on"})]
    results = measure.interleaved(commands, rounds=2, progress=False)
    assert results == {"a": [{"arg": "1", "env": None}] * 2, "b": [{"arg": "2", "env": "on"}] * 2}


def test_op_timing_prints_one_row_per_op(capsys):
    args = elementwise_bench.parse_args(["--part", "ops", "--precisions", "float32", "--jit", "no-xla",
                                         "--batch", "2", "--tokens", "3", "--width", "8", "--repeats", "1"])
    elementwise_bench.ops_part(args)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| GELU") or
            line.startswith("| LayerNorm")]
    assert [row.split(" | ")[1] for row in rows] == ["(6, 32)", "(2, 3, 8)"]


def test_model_table_pairs_each_round_and_runs_each_side_with_its_switch(monkeypatch, capsys):
    seen = {}

    def fake_interleaved(commands, rounds):
        seen.update({key: env for key, _, env in commands})
        speeds = {"keras": [100.0, 50.0, 80.0], "tfvit": [110.0, 60.0, 80.0]}
        return {key: [{"images_per_s": v, "peak_mb": 900.0 + (key[3] == "keras") * 100} for v in speeds[key[3]]]
                for key, *_ in commands}

    monkeypatch.setattr(elementwise_bench, "interleaved", fake_interleaved)
    elementwise_bench.model_part(elementwise_bench.parse_args(
        ["--part", "model", "--configs", "cifar_vit", "--precisions", "float32", "--jit", "xla", "--rounds", "3"]))
    assert seen == {("cifar_vit", "float32", "xla", "keras"): {"TFVIT_CLOSED_FORM_GRADIENTS": "0"},
                    ("cifar_vit", "float32", "xla", "tfvit"): {"TFVIT_CLOSED_FORM_GRADIENTS": "1"}}
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| cifar_vit"))
    # per-round ratios 1.10, 1.20, 1.00 -> median 1.10; medians of speeds 80 and 80
    assert row == "| cifar_vit | float32 | yes | 80.0 | 80.0 | 1.10 | 1.10 1.20 1.00 | 1000 | 900 |"
