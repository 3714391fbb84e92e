"""``--compile`` (lavt.precision.compile_for_inference): taken by predict, evaluate, serve and
benchmark, refused with an exported graph, and a compiled model that computes the eager
model's outputs."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from torch import nn

import lavt.precision as precision
from conftest import tiny_model_and_inputs
from lavt.assets import default_model_path
from lavt.cli import main
from lavt.modeling.fusion import PWAM
from lavt.runtime import autocast

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


@pytest.mark.parametrize("command", ["predict", "evaluate", "serve", "benchmark"])
def test_compile_flag_in_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "--compile" in capsys.readouterr().out


def test_compile_refused_with_an_exported_graph(tmp_path, capsys):
    code = main(
        ["predict", "--checkpoint", str(tmp_path / "model.onnx"), "--runtime", "onnxruntime",
         "--compile", "--image", str(tmp_path / "a.jpg"), "--text", "the dog",
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err
    assert err == "lavt predict: error: --compile: compiles a torch model, not a onnxruntime graph"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_predict_compile_runs_the_compiled_model(tmp_path, monkeypatch):
    """The CLI hands the predictor's model to compile_for_inference and predicts with what
    comes back (a stand-in that counts calls: the wiring, not inductor, is under test)."""
    compiled, calls = [], []

    def spy(model, **kwargs):
        compiled.append(model)
        model.register_forward_pre_hook(lambda module, args: calls.append(1))
        return model

    monkeypatch.setattr(precision, "compile_for_inference", spy)
    example = json.loads((EXAMPLES / "examples.json").read_text())[0]
    code = main(
        ["predict", "--checkpoint", str(default_model_path()), "--dtype", "bf16", "--compile",
         "--image", str(EXAMPLES / example["file"]), "--text", example["texts"][0],
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 0 and len(compiled) == 1 and calls
    assert any(precision.runs_in_float32(m) for m in compiled[0].modules())  # the bf16 policy
    assert any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_compiled_bf16_island_matches_eager():
    """Inductor with frozen weights (what --compile runs) on a float32 island of a bf16
    model under autocast: the eager outputs, in float32. One small module: a whole model
    takes minutes to compile."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.ModuleDict({"fusion": PWAM(dim=32, text_dim=24), "out": nn.Linear(32, 8)})
    fast = precision.cast_for_inference(model.eval(), "bf16")
    assert precision.runs_in_float32(fast.fusion) and fast.out.weight.dtype == torch.bfloat16
    compiled = precision.compile_for_inference(fast.fusion)
    g = torch.Generator().manual_seed(1)
    x, lang = torch.randn(2, 49, 32, generator=g), torch.randn(2, 24, 7, generator=g)
    lang_mask = torch.ones(2, 7, 1)
    lang_mask[1, 4:] = 0
    with torch.inference_mode(), autocast("cpu", torch.bfloat16):
        want = fast.fusion(x.bfloat16(), lang, lang_mask)
        got = compiled(x.bfloat16(), lang, lang_mask)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_bf16_policy_is_one_graph():
    """The float32 islands (autocast off inside autocast) break no graph under dynamo."""
    torch._dynamo.reset()
    model, inputs = tiny_model_and_inputs()
    fast = precision.cast_for_inference(model.eval(), "bf16")
    assert any(precision.runs_in_float32(m) for m in fast.modules())
    with torch.inference_mode(), autocast("cpu", torch.bfloat16):
        explained = torch._dynamo.explain(fast)(*inputs)
    reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_count == 1 and not reasons, reasons
