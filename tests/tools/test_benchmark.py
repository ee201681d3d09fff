"""The benchmark's pure parts: the keras-hub and timm configuration mappings (tools.benchmark_config,
tools.benchmark_torch), the FLOP formulas, the summary and the table (tools.benchmark,
tools.benchmark_child). Nothing here times anything."""

import json


import pytest

import tools.benchmark as bench
import tools.benchmark_child as child
import tools.benchmark_config as config
import tools.benchmark_torch as torch_bench
import tools.measure as measure

needs_keras_hub = pytest.mark.skipif(not config.keras_hub_available(),
                                     reason="keras-hub is not installed (the [bench] extra)")
needs_timm = pytest.mark.skipif(not config.timm_available(), reason="PyTorch or timm is not installed")


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


def test_timm_vit_mapping_copies_the_tfvit_configuration():
    family, arguments = config.timm_arguments("vit_cifar_patch4_32")
    assert family == "vit"
    assert arguments["img_size"] == (32, 32) and arguments["patch_size"] == (4, 4) and arguments["in_chans"] == 3
    assert (arguments["depth"], arguments["num_heads"], arguments["embed_dim"]) == (6, 3, 192)
    assert arguments["mlp_ratio"] == 2.0 and arguments["qkv_bias"] is True
    assert arguments["class_token"] is True and arguments["global_pool"] == "token"
    assert arguments["fc_norm"] is False  # the final norm before the pooling, as tfvit's
    assert arguments["norm_epsilon"] == 1e-6 and arguments["num_classes"] == 10
    assert all(arguments[k] == 0.0 for k in ("drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate",
                                              "drop_path_rate"))
    assert json.loads(json.dumps([family, arguments]))[1]["depth"] == 6  # travels to the child as JSON


def test_timm_swin_mapping_copies_the_tfvit_configuration():
    family, arguments = config.timm_arguments("swin_cifar_patch2_window4_32")
    assert family == "swin"
    assert (arguments["img_size"], arguments["patch_size"], arguments["window_size"]) == ((32, 32), 2, 4)
    assert arguments["depths"] == (2, 2, 4) and arguments["num_heads"] == (2, 4, 8) and arguments["embed_dim"] == 64
    assert arguments["global_pool"] == "avg" and arguments["drop_path_rate"] == 0.0  # timm's default is 0.1
    _, tiny = config.timm_arguments("swin_tiny_patch4_window7_224")
    assert tiny["depths"] == (2, 2, 6, 2) and tiny["window_size"] == 7 and tiny["num_classes"] == 1000


def test_configurations_timm_cannot_express_are_refused():
    with pytest.raises(ValueError, match="attention"):
        config.timm_arguments("vit_cifar_patch4_32_performer_relu_16")
    with pytest.raises(ValueError, match="ViT and Swin"):
        config.timm_arguments("resnet18_cifar")


@needs_timm
@pytest.mark.parametrize("name", list(config.CONFIGS))
def test_timm_model_has_the_tfvit_parameter_count(name):
    registry_name = config.CONFIGS[name][0]
    family, arguments = json.loads(json.dumps(config.timm_arguments(registry_name)))  # as the child gets them
    model = torch_bench.build_timm(family, arguments)
    params, trainable = torch_bench.count_params(model)
    assert params == trainable == config.build_tfvit(registry_name).count_params()
    known = {"cifar_vit": 1_806_538, "cifar_swin": 3_827_126}
    assert params == known.get(name, params)


def test_keras_build_refuses_timm():
    with pytest.raises(ValueError, match="timm"):
        config.build("timm", "vit_cifar_patch4_32")


def test_torch_settings_follow_precision_and_jit():
    assert torch_bench.torch_setting("float32", "no-xla") == (None, False)
    assert torch_bench.torch_setting("mixed_bfloat16", "no-xla") == ("bfloat16", False)
    assert torch_bench.torch_setting("float32", "xla") == (None, True)
    assert torch_bench.describe_setting("mixed_bfloat16", "xla") == "torch.compile, bfloat16 autocast"
    assert set(torch_bench.TORCH_PRECISION) == set(config.PRECISIONS)
    assert set(torch_bench.TORCH_JIT) == set(config.JIT_MODES)


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


def test_summary_and_table_add_timm_columns_and_its_paired_ratio():
    results = {
        ("cifar_vit", "float32", "xla", "tfvit"): [_run(100.0), _run(120.0), _run(110.0)],
        ("cifar_vit", "float32", "xla", "keras_hub"): [_run(50.0), _run(100.0), _run(55.0)],
        ("cifar_vit", "float32", "xla", "timm"): [_run(200.0), _run(100.0), {"error": "RuntimeError: boom"}],
        ("cifar_swin", "float32", "xla", "tfvit"): [_run(80.0)],
    }
    rows = bench.summarize(results, macs={"cifar_vit": 1e8, "cifar_swin": 1e8}, peaks={"float32": 100.0})
    vit, swin = rows
    assert vit["timm_images_per_s"] == 150.0 and vit["timm_error"] == "RuntimeError: boom"
    assert vit["timm_ratio"] == pytest.approx(0.85)  # median of 0.5 and 1.2; round 3's timm failed
    assert vit["ratio"] == pytest.approx(2.0)
    assert not swin["timm_measured"] and swin["timm_ratio"] is None
    table = bench.format_table(rows).splitlines()
    assert {line.count("|") for line in table} == {17}  # 16 columns: 4 more than without timm
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:8] == ["config", "precision", "XLA / torch.compile", "tfvit img/s", "keras-hub img/s",
                          "timm img/s", "tfvit/keras-hub", "tfvit/timm"]
    assert header[-1] == "timm fraction of peak" and "timm peak MB" in header
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[3:8] == ["110.0", "55.0", "150.0", "2.00", "0.85"]
    assert cells[-1] == "0.900"  # 150 img/s x 6 x 1e8 = 90 GFLOP/s of a 100 GFLOP/s peak
    swin_cells = [c.strip() for c in table[3].strip("|").split("|")]
    assert swin_cells[5] == swin_cells[7] == bench.MISSING
    compile_table = bench.format_compile_table(rows).splitlines()
    assert compile_table[0].endswith("| timm compile s |") and compile_table[2].count("|") == 7


def test_info_line_compares_timm_parameters():
    info = dict(input_shape=[32, 32, 3], num_classes=10, tfvit_macs=1e8, tfvit_params=1000, tfvit_trainable=1000,
                timm_params=1000)
    assert "tfvit 1,000 / timm 1,000: equal" in bench.describe_info("cifar_vit", info, 128)
    info.update(timm_params=990)
    assert "differ by +10 (tfvit - timm)" in bench.describe_info("cifar_vit", info, 128)


def test_parent_passes_timm_its_arguments_and_the_child_parses_them():
    args = bench.parse_args(["--configs", "cifar_vit", "cifar_swin", "--precisions", "float32", "--jit", "xla",
                             "--impls", "tfvit", "timm"])
    timm_arguments = {"cifar_swin": list(config.timm_arguments("swin_cifar_patch2_window4_32"))}
    commands = bench.measurement_commands(args, ["tfvit", "timm"], {"cifar_vit": 128, "cifar_swin": 128},
                                          keras_hub_configs=set(), timm_arguments=timm_arguments)
    assert [key for key, _ in commands][1:] == [("cifar_vit", "float32", "xla", "tfvit"),
                                                ("cifar_swin", "float32", "xla", "tfvit"),
                                                ("cifar_swin", "float32", "xla", "timm")]
    parsed = child.parse_args(commands[-1][1][2:])
    assert parsed.impl == "timm"
    family, arguments = json.loads(parsed.timm_arguments)
    assert family == "swin" and arguments["depths"] == [2, 2, 4] and arguments["window_size"] == 4


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
