"""`lavt benchmark` runs and reports sane figures (not a timing test)."""

from __future__ import annotations

import json

import pytest

from lavt.cli import main


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_benchmark_modes(tmp_path, capsys, mode):
    out = tmp_path / "b.json"
    args = ["benchmark", "--preset", "tiny", "--img-size", "64", "--mode", mode]
    args += ["--repeats", "2", "--warmup", "1", "--expressions-per-image", "2", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["mode"] == mode and result["batch_size"] == 1
    assert result["latency_ms_median"] > 0 and result["pairs_per_second"] > 0
    assert result["gflops_per_batch"] > 0 and 0 < result["share_of_peak"] < 10
    assert result["peak_memory_mib"] > 0
    assert "latency / batch" in capsys.readouterr().out


def test_benchmark_bad_arguments(capsys):
    assert main(["benchmark", "--batch-size", "0", "--img-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size" in err and "Traceback" not in err


def test_benchmark_eval_and_data(tmp_path, capsys):
    out = tmp_path / "e.json"
    args = ["benchmark", "--preset", "tiny", "--img-size", "32", "--batch-size", "2"]
    assert (
        main([*args, "--mode", "eval", "--repeats", "1", "--warmup", "1", "--json", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert result["extra"]["expressions/s (batched)"] > 0
    assert result["extra"]["expressions/s (one at a time)"] > 0
    assert main([*args, "--mode", "data", "--repeats", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["pairs_per_second"] > 0
    assert "samples/s per worker" in capsys.readouterr().out
