"""The model against the golden outputs, the official key layout and basic invariants."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from lavt.checkpoint import filter_released_state_dict, infer_config, load_model
from lavt.modeling import LAVTConfig, build_model, preset_config
from lavt.modeling.swin import relative_position_index, shift_mask

GOLDEN_CASES = ["lavt_one_w7", "lavt_w12_mha2"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=GOLDEN_CASES)
def golden(request, golden_dir):
    model = load_model(golden_dir / f"{request.param}.pth")
    return request.param, model, np.load(golden_dir / f"{request.param}.npz")


@pytest.mark.parametrize("case", [0, 1])
def test_golden_outputs(golden, case):
    name, model, data = golden
    inputs = [
        torch.from_numpy(data[f"in{case}_{k}"]) for k in ("image", "input_ids", "attention_mask")
    ]
    with torch.no_grad():
        out = model.forward_intermediates(*inputs)
    recorded = {
        "text_features": out["text_features"],
        "decoder": out["decoder"],
        "logits": out["logits"],
    }
    recorded.update({f"stage{s}": out["stages"][s] for s in range(4)})
    for key, value in recorded.items():
        expected = torch.from_numpy(data[f"out{case}_{key}"])
        assert value.shape == expected.shape, (name, key)
        err = (value - expected).abs().max().item()
        assert err < TOLERANCE, f"{name} input {case} {key}: max abs error {err:.2e}"


def test_golden_config_inferred(golden_dir):
    one = load_model(golden_dir / "lavt_one_w7.pth").config
    two = load_model(golden_dir / "lavt_w12_mha2.pth").config
    assert (one.variant, one.window_size, one.pwam_heads) == ("lavt_one", 7, (1, 1, 1, 1))
    assert (two.variant, two.window_size, two.pwam_heads) == ("lavt", 12, (2, 2, 2, 2))
    for cfg in (one, two):
        assert (cfg.embed_dim, cfg.depths, cfg.num_heads) == (16, (2, 2, 2, 2), (1, 2, 4, 8))
        assert (cfg.text.hidden_size, cfg.text.num_layers, cfg.text.num_heads) == (128, 2, 2)
        assert (cfg.text.vocab_size, cfg.text.intermediate_size) == (1000, 256)


def _read_tsv(path: Path) -> dict[str, torch.Tensor]:
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out = {}
    for row in rows:
        shape = [int(x) for x in row["shape"].strip("[]").split(",") if x.strip()]
        out[row["key"]] = torch.empty(shape, dtype=getattr(torch, row["dtype"]), device="meta")
    return out


OFFICIAL = [(p, w, "lavt_one") for p in ("tiny", "small", "base", "large") for w in (7, 12)]
OFFICIAL += [(p, w, "lavt") for p in ("tiny", "small", "base", "large") for w in (7, 12)]


@pytest.mark.parametrize(("preset", "window", "variant"), OFFICIAL)
def test_presets_match_official_keys(golden_dir, preset, window, variant):
    keys_dir = golden_dir / "official_keys"
    official = _read_tsv(keys_dir / f"lavt_one_{preset}_window{window}.model.tsv")
    bert = None
    if variant == "lavt":
        # the `lavt` variant stores the same backbone/decoder and the BERT apart
        official = {k: v for k, v in official.items() if not k.startswith("text_encoder.")}
        bert = _read_tsv(keys_dir / "lavt_base_window12.bert_model.tsv")
    expected = filter_released_state_dict(official, bert)
    config = preset_config(preset, window_size=window, variant=variant)
    with torch.device("meta"):
        model = build_model(config)
    ours = model.state_dict()
    assert set(ours) == set(expected)
    for key, value in ours.items():
        assert tuple(value.shape) == tuple(expected[key].shape), key
        assert value.dtype == expected[key].dtype, key
    inferred = infer_config(expected, None)
    assert inferred.replace(variant=variant, drop_path_rate=config.drop_path_rate) == config


def test_released_lavt_layout_matches(golden_dir):
    keys_dir = golden_dir / "official_keys"
    model_keys = _read_tsv(keys_dir / "lavt_base_window12.model.tsv")
    bert = _read_tsv(keys_dir / "lavt_base_window12.bert_model.tsv")
    expected = filter_released_state_dict(model_keys, bert)
    with torch.device("meta"):
        model = build_model(preset_config("base", window_size=12))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in expected.items()
    }


def test_config_round_trip():
    config = tiny_config(pwam_heads=(1, 2, 2, 4), fusion_drop=0.1)
    data = config.to_dict()
    assert all(isinstance(v, list) for v in (data["depths"], data["num_heads"], data["pwam_heads"]))
    assert isinstance(data["text"], dict)
    assert LAVTConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown"):
        LAVTConfig.from_dict({**data, "bogus": 1})


def test_config_validation():
    with pytest.raises(ValueError, match="variant"):
        tiny_config(variant="nope")
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(pwam_heads=(3, 1, 1, 1))
    with pytest.raises(ValueError, match="preset"):
        preset_config("huge")


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (5, 9), (100, 30)])
def test_any_input_size(tiny_model, size):
    torch.manual_seed(1)
    image = torch.randn(2, 3, *size)
    ids = torch.randint(1, 30522, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        logits = tiny_model(image, ids, mask)
    assert logits.shape == (2, 2, *size)
    assert torch.isfinite(logits).all()


def test_batch_items_are_independent(tiny_model):
    torch.manual_seed(2)
    image = torch.randn(3, 3, 48, 40)
    ids = torch.randint(1, 30522, (3, 20))
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[2, 7:] = 0
    with torch.no_grad():
        together = tiny_model(image, ids, mask)
        alone = torch.cat(
            [tiny_model(image[i : i + 1], ids[i : i + 1], mask[i : i + 1]) for i in range(3)]
        )
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_padded_words_do_not_matter(tiny_model):
    """Changing ids under a zero attention mask leaves the output unchanged."""
    torch.manual_seed(3)
    image = torch.randn(1, 3, 32, 32)
    ids = torch.randint(1, 30522, (1, 20))
    mask = torch.zeros(1, 20, dtype=torch.long)
    mask[0, :6] = 1
    other = ids.clone()
    other[0, 6:] = torch.randint(1, 30522, (14,))
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(image, ids, mask), tiny_model(image, other, mask))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model(tiny_config(drop_path_rate=0.1)).train()
    image = torch.randn(2, 3, 40, 40)
    ids = torch.randint(1, 30522, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    model(image, ids, mask).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == ["backbone.layers.3.res_gate.0.weight", "backbone.layers.3.res_gate.2.weight"]


def test_training_after_inference_still_gets_bias_gradients():
    # inference caches the bias + shift mask sum; a training step after it must not reuse it
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    image = torch.randn(2, 3, 40, 40)
    ids = torch.randint(1, 30522, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    with torch.no_grad():
        model(image, ids, mask)
    model.train()
    model(image, ids, mask).square().mean().backward()
    tables = [n for n, p in model.named_parameters() if n.endswith("relative_position_bias_table")]
    missing = [n for n, p in model.named_parameters() if n in tables and p.grad is None]
    assert tables and not missing, missing


def test_grad_checkpointing_matches():
    torch.manual_seed(0)
    model = build_model(tiny_config()).train()
    image = torch.randn(2, 3, 32, 32)
    ids = torch.randint(1, 30522, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    torch.manual_seed(1)  # the same dropout draws in both runs
    model(image, ids, mask).square().mean().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    model(image, ids, mask).square().mean().backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, plain[n], atol=1e-6, rtol=1e-5, msg=n)


def test_relative_position_index_and_shift_mask():
    index = relative_position_index(2)
    # token (0,0) vs (1,1): dy = dx = -1 -> (0) * 3 + 0 = 0; a token with itself -> centre 4
    assert index[0, 3] == 0 and index[0, 0] == 4 and index[3, 0] == 8
    mask = shift_mask(4, 4, window=2, shift=1)
    assert mask.shape == (4, 4, 4)
    assert (mask[0] == 0).all()  # the top-left window lies in one region
    assert (mask[-1] != 0).sum() == 12  # the bottom-right window holds four regions
    assert set(mask.unique().tolist()) == {-100.0, 0.0}


def test_no_persistent_derived_buffers(tiny_model):
    assert not [k for k in tiny_model.state_dict() if "relative_position_index" in k]
    assert not [k for k in tiny_model.state_dict() if "position_ids" in k]


def test_cached_attention_bias_follows_the_weights():
    """The inference-time bias cache is refreshed when the weights change."""
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    other = build_model(tiny_config()).eval()
    image = torch.randn(1, 3, 40, 40)
    ids = torch.randint(1, 30522, (1, 20))
    mask = torch.ones(1, 20, dtype=torch.long)
    with torch.inference_mode():
        model(image, ids, mask)  # fills the caches
    with torch.no_grad():
        model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(model(image, ids, mask), other(image, ids, mask))
