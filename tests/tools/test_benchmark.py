"""The benchmark's pure parts: the keras-hub configuration mapping (tools.benchmark_config), the FLOP
formulas, the summary and the table (tools.benchmark, tools.benchmark_child). Nothing here times anything."""

import pytest

import tools.benchmark as bench
import tools.benchmark_child as child
import tools.benchmark_config as config
import tools.measure as measure

needs_keras_hub = pytest.mark.skipif(not config.keras_hub_available(),
                                     reason="keras-hub is not installed (the [bench] extra)")


def test_vit_mapping_copies_the_tfvit_configuration():
    family, backbone, classifier = config.keras_hub_arguments("vit_cifar_patch4_32")
    assert family == "vit"
    assert backbone["image_shape"] == (32, 32, 3)
    assert backbone["patch_size"] == (4, 4)
    assert (backbone["num_layers"], backbone["num_heads"], backbone["hidden_dim"]) == (6, 3, 192)
    assert backbone["mlp_dim"] == 384  # mlp_ratio 2
    assert backbone["use_class_token"] and classifier["pooling"] == "token"
    assert backbone["layer_norm_epsilon"] == 1e-6
    assert backbone["dropout_rate"] == backbone["attention_dropout"] == 0.0
    assert classifier["num_classes"] == 10 and classifier["head_dtype"] == "float32"
    assert classifier["activation"] is None


def test_swin_mapping_copies_the_tfvit_configuration():
    family, backbone, classifier = config.keras_hub_arguments("swin_tiny_patch4_window7_224")
    assert family == "swin"
    assert backbone["image_shape"] == (224, 224, 3)
    assert (backbone["patch_size"], backbone["window_size"], backbone["embed_dim"]) == (4, 7, 96)
    assert backbone["depths"] == (2, 2, 6, 2) and backbone["num_heads"] == (3, 6, 12, 24)
    assert backbone["drop_path"] == 0.0  # keras-hub's default is 0.1; tfvit's is overridden to 0 too
    assert classifier["num_classes"] == 1000


def test_configurations_keras_hub_cannot_express_are_refused():
    with pytest.raises(ValueError, match="attention"):
        config.keras_hub_arguments("vit_cifar_patch4_32_performer_relu_16")
    with pytest.raises(ValueError, match="ViT and Swin"):
        config.keras_hub_arguments("resnet18_cifar")


def test_loss_takes_logits_of_tfvit_heads():
    for registry_name, _ in config.CONFIGS.values():
        assert config.from_logits(config.tfvit_config(registry_name)[1]) is True
    assert config.from_logits({"classifier_activation": "softmax"}) is False


@needs_keras_hub
@pytest.mark.parametrize("registry_name", ["vit_cifar_patch4_32", "swin_cifar_patch2_window4_32"])
def test_keras_hub_model_has_the_tfvit_parameter_count(registry_name):
    tfvit_model = config.build_tfvit(registry_name)
    hub_model = config.build_keras_hub(registry_name)
    assert hub_model.input_shape == tfvit_model.input_shape
    assert hub_model.output_shape == tfvit_model.output_shape
    assert hub_model.count_params() == tfvit_model.count_params()


def test_flop_formulas():
    # forward + backward = 3 forward passes, 2 FLOPs per MAC
    assert bench.train_flops_per_s(100.0, 1e9) == pytest.approx(6e11)
    assert child.matmul_flops(2048) == 2 * 2048 ** 3


def _run(images_per_s, batch=128, **extra):
    return dict(images_per_s=images_per_s, ms_per_step=1000 * batch / images_per_s, peak_mb=1000.0, compile_s=5.0,
                **extra)


def test_peak_is_the_best_rate_per_dtype_over_jit_modes_and_rounds():
    runs = [{"float32/xla": 90.0, "float32/no-xla": 100.0, "bfloat16/xla": 300.0, "bfloat16/no-xla": 200.0},
            {"float32/xla": 80.0, "float32/no-xla": 120.0, "bfloat16/xla": 100.0, "bfloat16/no-xla": 220.0}]
    assert bench.peak_gflops(runs) == {"float32": 120.0, "bfloat16": 300.0}
    assert bench.peak_gflops([{"float32/xla": 5.0}]) == {"float32": 5.0}


def test_summary_medians_paired_ratio_and_fraction_of_own_dtype_peak():
    results = {
        ("cifar_vit", "float32", "xla", "tfvit"): [_run(100.0), _run(120.0), _run(110.0)],
        ("cifar_vit", "float32", "xla", "keras_hub"): [_run(50.0), _run(100.0), _run(55.0)],
        ("cifar_vit", "mixed_bfloat16", "xla", "tfvit"): [_run(200.0)],
        ("cifar_vit", "mixed_bfloat16", "xla", "keras_hub"): [{"error": "RuntimeError: boom"}],
    }
    rows = bench.summarize(results, macs={"cifar_vit": 1e8}, peaks={"float32": 100.0, "bfloat16": 400.0})
    assert [(r["precision"], r["jit"]) for r in rows] == [("float32", "xla"), ("mixed_bfloat16", "xla")]
    f32, bf16 = rows
    assert f32["tfvit_images_per_s"] == 110.0 and f32["keras_hub_images_per_s"] == 55.0
    assert f32["ratio"] == pytest.approx(2.0)  # median of the per-round ratios 2.0, 1.2, 2.0
    assert f32["tfvit_gflops"] == pytest.approx(110.0 * 6 * 1e8 / 1e9)
    assert f32["tfvit_peak_fraction"] == pytest.approx(66.0 / 100.0)
    assert f32["keras_hub_peak_fraction"] == pytest.approx(33.0 / 100.0)
    assert bf16["tfvit_peak_fraction"] == pytest.approx(120.0 / 400.0)  # the bfloat16 peak
    assert bf16["keras_hub_images_per_s"] is None and bf16["ratio"] is None
    assert bf16["keras_hub_error"] == "RuntimeError: boom"


def test_table_has_one_line_per_row_and_marks_missing_values():
    results = {
        ("cifar_vit", "float32", "xla", "tfvit"): [_run(100.0)],
        ("cifar_vit", "float32", "xla", "keras_hub"): [_run(50.0)],
        ("cifar_swin", "float32", "no-xla", "tfvit"): [_run(80.0)],
        ("cifar_swin", "mixed_bfloat16", "no-xla", "tfvit"): [_run(90.0)],
        ("cifar_swin", "mixed_bfloat16", "no-xla", "keras_hub"): [{"error": "ValueError: no"}],
    }
    rows = bench.summarize(results, macs={"cifar_vit": 1e8, "cifar_swin": 1e8}, peaks={"float32": 100.0})
    table = bench.format_table(rows).splitlines()
    assert len(table) == 2 + 3
    widths = {line.count("|") for line in table}
    assert widths == {13}  # 12 columns without device memory
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:6] == ["config", "precision", "XLA", "tfvit img/s", "keras-hub img/s", "tfvit/keras-hub"]
    vit = [c.strip() for c in table[2].strip("|").split("|")]
    assert vit[:7] == ["cifar_vit", "float32", "yes", "100.0", "50.0", "2.00", "1280.0"]
    assert vit[-3:] == ["60.0", "0.600", "0.300"]
    swin = [c.strip() for c in table[3].strip("|").split("|")]
    assert swin[4] == bench.MISSING and swin[5] == bench.MISSING  # keras-hub not measured
    failed = [c.strip() for c in table[4].strip("|").split("|")]
    assert failed[4] == "failed"
    assert failed[-2] == bench.MISSING  # no bfloat16 peak measured


def test_table_adds_device_memory_columns_when_measured():
    results = {("vit_tiny", "float32", "xla", "tfvit"): [_run(10.0, batch=32, device_peak_mb=900.0)]}
    table = bench.format_table(bench.summarize(results, {"vit_tiny": 1e9}, {})).splitlines()
    assert "tfvit device MB" in table[0] and table[2].count("|") == 15


def test_parent_plans_children_that_the_child_module_parses():
    args = bench.parse_args(["--configs", "cifar_vit", "cifar_swin", "--precisions", "mixed_bfloat16",
                             "--jit", "no-xla", "--steps", "7", "--warmup", "2", "--batch", "16"])
    commands = bench.measurement_commands(args, ["tfvit", "keras_hub"], {"cifar_vit": 16, "cifar_swin": 16},
                                          keras_hub_configs={"cifar_vit"})
    assert [key for key, _ in commands] == [
        "matmul", ("cifar_vit", "mixed_bfloat16", "no-xla", "tfvit"),
        ("cifar_vit", "mixed_bfloat16", "no-xla", "keras_hub"), ("cifar_swin", "mixed_bfloat16", "no-xla", "tfvit")]
    for key, command in commands:
        assert command[:2] == ["-m", "tools.benchmark_child"] and all(isinstance(a, str) for a in command)
        parsed = child.parse_args(command[2:])
        if key == "matmul":
            assert parsed.kind == "matmul" and parsed.matmul_size == args.matmul_size
            continue
        assert parsed.kind == "train"
        assert (parsed.config, parsed.precision, parsed.jit, parsed.impl) == key
        assert (parsed.batch, parsed.steps, parsed.warmup) == (16, 7, 2)


def test_a_child_runs_as_a_module_from_any_working_directory(tmp_path, monkeypatch):
    """interleaved runs ``python -m tools.benchmark_child`` in the repository root, whatever the cwd."""
    monkeypatch.chdir(tmp_path)
    command = bench.child_command("matmul", "--matmul-size", 8, "--matmul-repeats", 1)
    (run,) = measure.interleaved([("matmul", command)], rounds=1, progress=False)["matmul"]
    assert set(run) == {f"{dtype}/{jit}" for dtype in config.MATMUL_DTYPES for jit in config.JIT_MODES}
    assert all(rate > 0 for rate in run.values())
