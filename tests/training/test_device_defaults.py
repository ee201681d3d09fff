import dataclasses

import pytest

from tfvit.experiments import RunConfig
from tfvit.training import device_defaults
from tfvit.training.device_defaults import choose, cpu_flags, resolve


def test_cpu_flags_are_read_from_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags, expected", [
    ({"avx512f", "avx512_bf16"}, ("mixed_bfloat16", False)),  # oneDNN bfloat16 outside XLA
    ({"amx_bf16", "amx_tile"}, ("mixed_bfloat16", False)),
    ({"avx2", "avx512f"}, ("float32", True)),                 # no bfloat16 instructions: float32 + XLA
    (set(), ("float32", True)),
])
def test_cpu_choice_follows_the_bfloat16_instructions(flags, expected):
    chosen = choose("tensorflow", None, frozenset(flags))
    assert (chosen.precision, chosen.jit_compile) == expected


def test_gpu_and_jax_choices():
    assert (choose("tensorflow", (9, 0), frozenset()).precision, choose("jax", (8, 0), frozenset()).jit_compile) == (
        "mixed_bfloat16", True)
    assert choose("tensorflow", (7, 5), frozenset()).precision == "mixed_float16"
    assert (choose("jax", None, frozenset({"avx512_bf16"})).precision, choose("jax", None, frozenset()).jit_compile) == (
        "float32", True)


def test_resolve_keeps_explicit_choices_and_fills_auto_from_the_machine(monkeypatch):
    machine = device_defaults.TrainingDefaults("mixed_bfloat16", False, "test CPU", "test")
    monkeypatch.setattr(device_defaults, "training_defaults", lambda: machine)
    assert resolve("float32", True) == ("float32", True)
    assert resolve("auto", True) == ("mixed_bfloat16", True)
    assert resolve("float32", None) == ("float32", False)
    config = RunConfig(dataset="cifar10", model="vit_cifar_patch4_32", batch_size=8, precision="auto", jit=None)
    assert (config.precision, config.jit) == ("mixed_bfloat16", False)
    assert "mixed_bfloat16" in config.name and "xla" not in config.name
    assert dataclasses.replace(config, seed=1).precision == "mixed_bfloat16"
