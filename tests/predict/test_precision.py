"""Inference precision (lavt.precision): --dtype auto's choice, the bf16/int8 copies, the
caller's model left untouched, and masks that agree with float32 on the bundled model."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lavt.precision as precision
from lavt import Predictor, load_model
from lavt.assets import default_model_path
from lavt.errors import InputError
from lavt.precision import cast_for_inference, choose_precision
from lavt.runtime import autocast

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


@pytest.fixture(scope="module")
def bundled():
    return load_model(default_model_path())


@pytest.fixture(scope="module")
def scenes():
    """The bundled example images with all their expressions."""
    examples = json.loads((EXAMPLES / "examples.json").read_text())
    return [(EXAMPLES / e["file"], e["texts"]) for e in examples]


def _machine(monkeypatch, flags: set[str], speedup: float) -> list[int]:
    """Pretend to run on a CPU with ``flags`` whose bf16 probe gives ``speedup``."""
    probes: list[int] = []
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)

    def probe() -> float:
        probes.append(1)
        return speedup

    monkeypatch.setattr(precision, "bf16_matmul_speedup", probe)
    return probes


@pytest.mark.parametrize(
    ("flags", "speedup", "embed_dim", "expected", "probed"),
    [
        (set(), 9.0, 128, "fp32", False),  # no bf16 unit: never probed
        ({"avx512f", "avx512_bf16"}, 4.0, 128, "bf16", True),  # AMD Zen 4 / Intel AVX512-BF16
        ({"amx_bf16", "amx_tile"}, 6.0, 96, "bf16", True),  # Intel AMX
        ({"avx512_bf16"}, 1.1, 128, "fp32", True),  # the flag, but the probe says no
        ({"amx_bf16"}, 6.0, 16, "fp32", False),  # the bundled model: matrices too small
    ],
)
def test_auto_choice(monkeypatch, flags, speedup, embed_dim, expected, probed):
    probes = _machine(monkeypatch, flags, speedup)
    choice = choose_precision("auto", "cpu", embed_dim=embed_dim)
    assert choice.name == expected
    assert bool(probes) == probed
    assert choice.reason.startswith("auto")
    assert choice.amp == (torch.bfloat16 if expected == "bf16" else None)


def test_auto_logs_its_reason(monkeypatch, bundled, caplog):
    _machine(monkeypatch, {"avx512_bf16"}, 1.0)
    with caplog.at_level("DEBUG", logger="lavt"):
        predictor = Predictor(bundled, device="cpu", dtype="auto")
    assert predictor.precision.name == "fp32" and predictor.amp is None
    assert "inference dtype fp32 (auto: embed_dim 16 < 64" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="lavt"):
        Predictor(bundled, device="cpu", dtype="int8")
    assert "inference dtype int8 (requested)" in caplog.text


def test_explicit_names_and_refusals(monkeypatch):
    _machine(monkeypatch, set(), 1.0)
    for name, want in [("bfloat16", "bf16"), ("none", "fp32"), ("int8", "int8"), (None, "fp32")]:
        assert choose_precision(name, "cpu").name == want
    assert choose_precision("auto", "meta").name == "fp32"  # not a CPU: float32 unless asked
    with pytest.raises(InputError, match="dtype 'fp8'") as err:
        choose_precision("fp8", "cpu")
    assert err.value.param == "dtype"
    with pytest.raises(InputError, match="CPU only"):
        choose_precision("int8", "meta")


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


ISLANDS = [f"backbone.layers.{s}.fusion" for s in range(4)]  # the bundled model's PWAMs


def _in_island(name: str) -> bool:
    return any(name == i or name.startswith(i + ".") for i in ISLANDS)


def test_bf16_copy_leaves_the_caller_model_alone(bundled):
    before = _snapshot(bundled)
    classes = {name: type(m) for name, m in bundled.named_modules()}
    predictor = Predictor(bundled, device="cpu", dtype="bf16")
    after = bundled.state_dict()
    assert all(
        torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in after
    )
    assert {name: type(m) for name, m in bundled.named_modules()} == classes
    fast = predictor.model
    assert fast is not bundled
    assert [n for n, m in fast.named_modules() if precision.runs_in_float32(m)] == ISLANDS
    for name, module in fast.named_modules():
        if isinstance(module, precision.MATMUL_MODULES):
            want = torch.float32 if _in_island(name) else torch.bfloat16
            assert module.weight.dtype == want, name
    # kept float32: shared with the caller's model, not copied
    for name in ("backbone.patch_embed.norm", "backbone.layers.0.fusion.vis_project.0"):
        kept = fast.get_submodule(name).weight
        assert kept.dtype == torch.float32
        assert kept.data_ptr() == bundled.get_submodule(name).weight.data_ptr()


def test_bf16_policy_runs_the_pwams_in_float32(bundled):
    """Under autocast the islands compute in float32, the Swin blocks in bf16."""
    fast = cast_for_inference(bundled, "bf16")
    seen: dict[str, torch.dtype] = {}

    def record(name):
        return lambda module, args, out: seen.__setitem__(name, out.dtype)

    for name in ("backbone.layers.1.fusion.image_lang_att.W.0", "backbone.layers.1.blocks.0.mlp"):
        fast.get_submodule(name).register_forward_hook(record(name))
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 64, 64, generator=g)
    ids = torch.randint(1, 40, (1, 12), generator=g)
    with torch.inference_mode(), autocast("cpu", torch.bfloat16):
        fast(image, ids, torch.ones(1, 12, dtype=torch.long))
    assert seen == {
        "backbone.layers.1.fusion.image_lang_att.W.0": torch.float32,
        "backbone.layers.1.blocks.0.mlp": torch.bfloat16,
    }


def test_bf16_all_copy_gives_the_autocast_path_outputs(bundled):
    """Casting every weight once changes nothing autocast computes, only when it casts."""
    fast = cast_for_inference(bundled, "bf16-all")
    assert not any(precision.runs_in_float32(m) for m in fast.modules())
    g = torch.Generator().manual_seed(0)
    image = torch.randn(4, 3, 64, 64, generator=g)
    ids = torch.randint(1, 40, (4, 12), generator=g)
    mask = torch.ones(4, 12, dtype=torch.long)
    with torch.inference_mode(), autocast("cpu", torch.bfloat16):
        assert torch.equal(fast(image, ids, mask), bundled(image, ids, mask))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "min_iou"), [("bf16", 0.99), ("bf16-all", 0.99), ("int8", 0.97)])
def test_low_precision_masks_agree_with_float32(bundled, scenes, dtype, min_iou):
    """Bundled model on its example scenes: pooled mask IoU against float32."""
    reference = Predictor(bundled, device="cpu", dtype="fp32")
    fast = Predictor(bundled, device="cpu", dtype=dtype)
    inter = union = 0
    for image, texts in scenes:
        pairs = zip(reference.predict(image, texts), fast.predict(image, texts), strict=True)
        for want, got in pairs:
            inter += int(np.logical_and(want.mask, got.mask).sum())
            union += int(np.logical_or(want.mask, got.mask).sum())
    assert union > 0 and inter / union >= min_iou


def test_load_model_dtype(tmp_path):
    model = load_model(default_model_path(), dtype="bfloat16")
    assert model.backbone.patch_embed.proj.weight.dtype == torch.bfloat16
    assert model.backbone.patch_embed.norm.weight.dtype == torch.float32
    fusion = model.backbone.layers[2].fusion  # cast in place: the islands too
    assert precision.runs_in_float32(fusion)
    assert fusion.project_mm[0].weight.dtype == torch.float32
    duplicate = copy.deepcopy(model)  # an island stays one in a copy (its class, not a closure)
    assert precision.runs_in_float32(duplicate.backbone.layers[2].fusion)
    again = cast_for_inference(model, "bf16")  # a bf16 model cast again keeps its islands
    assert again.backbone.layers[2].fusion.project_mm[0].weight.dtype == torch.float32
    quantised = load_model(default_model_path(), dtype="int8")
    assert not any(isinstance(m, nn.Linear) and type(m) is nn.Linear for m in quantised.modules())
    assert load_model(default_model_path()).backbone.patch_embed.proj.weight.dtype == torch.float32


def test_copy_made_under_inference_mode_still_runs(bundled, scenes):
    """Tensors copied under inference mode would break the Swin attention cache's key."""
    image, texts = scenes[0]
    with torch.inference_mode():
        predictor = Predictor(bundled, device="cpu", dtype="int8")
    assert predictor.predict(image, texts[:1])[0].mask.shape


def test_dtype_and_amp_together_refused(bundled):
    with pytest.raises(InputError, match="not both"):
        Predictor(bundled, device="cpu", dtype="bf16", amp=torch.bfloat16)
