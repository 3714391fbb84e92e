"""`lavt benchmark` runs every mode and reports sane figures (not a timing test)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import tiny_config
from lavt.bench import run_benchmark
from lavt.cli import main
from lavt.errors import InputError

TINY = dict(img_size=64, warmup=1, repeats=2, peak_matmul_size=256)


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_step_modes(mode):
    result = run_benchmark(mode=mode, config=tiny_config(), expressions_per_image=2, **TINY)
    assert result.mode == mode and result.batch_size == 1 and result.expressions_per_image == 2
    assert result.latency_ms_median > 0 and result.pairs_per_second > 0
    assert result.gflops_per_batch > 0 and 0 < result.share_of_peak < 10
    assert result.peak_memory_mib > 0 and result.repeats == 2
    assert "latency / batch" in result.table()


def test_train_mode_counts_the_backward_pass():
    infer = run_benchmark(mode="infer", config=tiny_config(), **TINY)
    train = run_benchmark(mode="train", config=tiny_config(), **TINY)
    assert train.gflops_per_batch > 2 * infer.gflops_per_batch


def test_grad_checkpointing_recomputes_the_backbone_in_train_mode():
    plain = run_benchmark(mode="train", config=tiny_config(), **TINY)
    checkpointed = run_benchmark(
        mode="train", config=tiny_config(), grad_checkpointing=True, **TINY
    )
    assert checkpointed.extra["grad_checkpointing"] is True
    assert "grad_checkpointing" not in plain.extra
    # the recomputed Swin forwards are counted: more FLOPs for the same step
    assert checkpointed.gflops_per_batch > plain.gflops_per_batch


def test_eval_and_data_modes():
    config = tiny_config(img_size=32)
    common = dict(config=config, img_size=32, batch_size=2, peak_matmul_size=256)
    result = run_benchmark(mode="eval", repeats=1, warmup=1, **common)
    assert result.extra["expressions/s (batched)"] > 0
    assert result.extra["expressions/s (one at a time)"] > 0
    result = run_benchmark(mode="data", repeats=3, warmup=0, **common)
    assert result.pairs_per_second > 0 and result.device == "cpu"
    assert "samples/s per worker" in result.table()


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--batch-size", "0", "at least 1"),
        ("--img-size", "8", "at least 32"),
        ("--img-size", "100", "multiple of 32"),
        ("--warmup", "-1", "at least 0"),
        ("--repeats", "0", "at least 1"),
        ("--expressions-per-image", "0", "at least 1"),
        ("--workers", "-2", "at least 0"),
        ("--threads", "0", "at least 1"),
        ("--device", "banana", "not a device"),
        ("--json", ".", "directory"),
    ],
)
def test_bad_arguments_get_one_line(capsys, flag, value, words):
    assert main(["benchmark", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lavt benchmark: error: {flag} ") and value in err and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_library_errors_name_parameters():
    with pytest.raises(InputError, match=r"^img_size 8") as info:
        run_benchmark(img_size=8)
    assert info.value.param == "img_size"


def test_underscore_aliases(capsys):
    assert main(["benchmark", "--img_size", "8"]) == 2
    assert "--img-size 8" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_with_a_preset(tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["benchmark", "--preset", "tiny", "--img-size", "64", "--mode", "infer"]
    assert main([*args, "--repeats", "2", "--warmup", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["preset"] == "tiny" and result["gflops_per_batch"] > 0
    assert oct(out.stat().st_mode & 0o777) in ("0o644", "0o664", "0o600", "0o640", "0o660")
    assert "latency / batch" in capsys.readouterr().out


def test_checkpoint_by_bundled_name():
    """--checkpoint times the model it names, at its own input size, and says how it ran."""
    result = run_benchmark(checkpoint="synthetic", dtype="auto", batch_size=2, **TINY)
    assert result.preset == "checkpoint synthetic" and result.img_size == 64
    assert result.dtype == "fp32"  # auto: the bundled model is too small for bf16
    assert result.extra["dtype path"].startswith("fp32: float32 weights (auto: embed_dim 16")
    assert result.pairs_per_second > 0


def test_bf16_on_a_cpu_reports_its_kernels():
    """The dtype path names the decoder convolutions the probe chose, with its figure."""
    result = run_benchmark(checkpoint="synthetic", dtype="bf16", batch_size=1, **TINY)
    path = result.extra["dtype path"]
    assert re.search(
        r"decoder 3x3 convolutions (Winograd|direct) \(probe: Winograd \d+\.\d\dx direct\), "
        r"window attention as batched products \(requested\)$",
        path,
    ), path


def test_checkpoint_file_in_int8_through_the_cli(tmp_path, capsys):
    from lavt.assets import default_model_path

    out = tmp_path / "b.json"
    args = ["--dtype", "int8", "--batch-size", "2", "--warmup", "0", "--repeats", "1"]
    args += ["--checkpoint", str(default_model_path()), "--json", str(out)]
    assert main(["benchmark", *args]) == 0
    record = json.loads(out.read_text())
    assert record["dtype"] == "int8" and record["img_size"] == 64
    assert record["extra"]["dtype path"].startswith("int8: int8 dynamic quantisation")
    assert "dtype path" in capsys.readouterr().out


def test_checkpoint_and_preset_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--preset", "tiny", "--checkpoint", "synthetic"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(InputError, match="train mode takes") as info:
        run_benchmark(mode="train", dtype="int8", config=tiny_config(), **TINY)
    assert info.value.param == "dtype"


def test_infer_compile_freezes_and_reports_the_compile_apart(monkeypatch):
    """--compile in infer mode goes through compile_for_inference (frozen weights, as
    lavt predict --compile); its first call is timed apart (a stand-in compiler here)."""
    import lavt.bench.steps as steps

    compiled = []

    def spy(model, **kwargs):
        compiled.append(kwargs)
        return model

    monkeypatch.setattr(steps, "compile_for_inference", spy)
    result = run_benchmark(mode="infer", config=tiny_config(), compile_model=True, **TINY)
    assert compiled == [{"mode": "default"}]
    assert result.compile and result.extra["compile_s (first call)"] >= 0
    assert "compile_s (first call)" in result.table()
