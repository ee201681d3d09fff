"""tools/measure.py's interleaved children and a tiny run of tools/elementwise_bench.py's op timing.
Nothing here asserts a time."""

import tools.benchmark_child as benchmark_child
import tools.elementwise_bench as elementwise_bench
import tools.measure as measure

ECHO = ("import json, os, sys; print('noise'); "
        "print(json.dumps({'arg': sys.argv[1], 'env': os.environ.get('TFVIT_X'), 'cwd': os.getcwd()}))")


def test_interleaved_runs_round_by_round_and_passes_each_childs_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the children run in the repository root whatever the caller's cwd
    commands = [("a", ["-c", ECHO, "1"]), ("b", ["-c", ECHO, "2"], {"TFVIT_X": "on"})]
    results = measure.interleaved(commands, rounds=2, progress=False)
    root = measure.ROOT
    assert results == {"a": [{"arg": "1", "env": None, "cwd": root}] * 2,
                       "b": [{"arg": "2", "env": "on", "cwd": root}] * 2}


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
        for key, command, _ in commands:  # tools.benchmark_child's training measurement of the row
            assert command[:2] == ["-m", "tools.benchmark_child"]
            parsed = benchmark_child.parse_args(command[2:])
            assert (parsed.kind, parsed.config, parsed.precision, parsed.jit, parsed.impl) == ("train", *key[:3], "tfvit")
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
