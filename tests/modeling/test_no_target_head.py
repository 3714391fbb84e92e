"""The optional no-target head: off by default (old checkpoints unchanged), trainable when on."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from lavt.checkpoint import load_model, save_checkpoint
from lavt.errors import InputError
from lavt.modeling import LAVTOutput, build_model
from lavt.modeling.no_target import check_rule, decide_no_target, resolve_rule


def _inputs(batch=2, size=64):
    torch.manual_seed(1)
    image = torch.randn(batch, 3, size, size)
    ids = torch.randint(1, 100, (batch, 6))
    attention = torch.ones(batch, 6, dtype=torch.long)
    attention[1, 4:] = 0
    return image, ids, attention


def test_default_model_has_no_head_and_unchanged_outputs():
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    assert model.no_target_head is None
    assert not any(k.startswith("no_target_head") for k in model.state_dict())
    inputs = _inputs()
    logits = model(*inputs)
    out = model(*inputs, return_no_target=True)
    assert isinstance(out, LAVTOutput) and out.no_target_logits is None
    assert torch.equal(out.logits, logits)
    # the decoder split (features, then the 1x1 classifier) is the same computation
    inter = model.forward_intermediates(*inputs)
    assert torch.equal(model.classifier(inter["stages"]), inter["decoder"])


def test_head_outputs_and_gradients():
    torch.manual_seed(0)
    model = build_model(tiny_config(no_target_head=True)).train()
    inputs = _inputs()
    out = model(*inputs, return_no_target=True)
    assert out.logits.shape == (2, 2, 64, 64) and out.no_target_logits.shape == (2, 2)
    assert model(*inputs).shape == (2, 2, 64, 64)  # old callers still get a tensor
    loss = torch.nn.functional.cross_entropy(out.no_target_logits, torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.no_target_head.parameters())
    # padding words do not change the pooled sentence
    model.eval()
    image, ids, attention = _inputs()
    other = ids.clone()
    other[1, 4:] = 7
    a = model(image, ids, attention, return_no_target=True).no_target_logits
    b = model(image, other, attention, return_no_target=True).no_target_logits
    assert torch.allclose(a, b, atol=1e-5)


def test_checkpoint_round_trip_with_and_without_head(tmp_path):
    for head in (False, True):
        torch.manual_seed(0)
        model = build_model(tiny_config(no_target_head=head)).eval()
        save_checkpoint(tmp_path / f"m{head}.pth", model)
        loaded = load_model(tmp_path / f"m{head}.pth")
        assert (loaded.no_target_head is not None) is head
        inputs = _inputs()
        want, got = model(*inputs, return_no_target=True), loaded(*inputs, return_no_target=True)
        assert torch.equal(want.logits, got.logits)
        if head:
            assert torch.equal(want.no_target_logits, got.no_target_logits)


def test_old_config_dicts_without_the_field_load():
    data = tiny_config().to_dict()
    data.pop("no_target_head")
    assert type(tiny_config()).from_dict(data).no_target_head is False


def test_decision_rules():
    logits = torch.zeros(3, 2, 4, 4)
    logits[0, 1, :2, :2] = 1.0  # 4 pixels
    logits[1, 1, 0, 0] = 1.0  # 1 pixel
    nt = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    assert decide_no_target(logits, None, rule="area").tolist() == [False, False, True]
    assert decide_no_target(logits, None, rule="area", area_threshold=1).tolist() == [
        False,
        True,
        True,
    ]
    assert decide_no_target(logits, nt, rule="head").tolist() == [True, False, False]  # tie: target
    assert resolve_rule("auto", True) == "head" and resolve_rule("auto", False) == "area"
    with pytest.raises(InputError, match="no no-target head"):
        resolve_rule("head", False)
    with pytest.raises(InputError, match="no_target_rule 'x'"):
        check_rule("x", 0)
    with pytest.raises(InputError, match="area_threshold -1"):
        check_rule("area", -1)
