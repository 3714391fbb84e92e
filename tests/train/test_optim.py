"""Optimizer groups, frozen BERT parts and the LR schedule follow the published recipe."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from lavt.errors import InputError
from lavt.modeling import build_model
from lavt.modeling.config import TextEncoderConfig
from lavt.train.optim import (
    build_optimizer,
    build_scheduler,
    configure_text_trainable,
    lr_factor,
    param_groups,
    parse_text_trainable,
)


@pytest.fixture(scope="module")
def model3():
    """Tiny model with a 3-layer BERT."""
    torch.manual_seed(0)
    text = TextEncoderConfig(
        vocab_size=100, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip
    return build_model(tiny_config(text=text))


def test_parse_text_trainable():
    assert parse_text_trainable("0-9", 12) == (False, list(range(10)))
    assert parse_text_trainable("0-9", 2) == (False, [0, 1])
    assert parse_text_trainable("all", 3) == (True, [0, 1, 2])
    assert parse_text_trainable("none", 3) == (False, [])
    assert parse_text_trainable("0-1,5", 12) == (False, [0, 1, 5])
    for bad in ("x", "3-1", "0-", "1;2"):
        with pytest.raises(InputError, match="text_trainable"):
            parse_text_trainable(bad, 12)


def test_text_trainable_freezes_embeddings_and_later_layers(model3):
    configure_text_trainable(model3, "0-1")
    for name, p in model3.text_encoder.named_parameters():
        expected = name.startswith(("encoder.layer.0.", "encoder.layer.1."))
        assert p.requires_grad == expected, name
    configure_text_trainable(model3, "all")
    assert all(p.requires_grad for p in model3.text_encoder.parameters())
    configure_text_trainable(model3, "none")
    assert not any(p.requires_grad for p in model3.text_encoder.parameters())


def test_param_groups_follow_the_recipe(model3):
    configure_text_trainable(model3, "0-1")
    groups = {g["name"]: g for g in param_groups(model3, weight_decay=0.01)}
    assert list(groups) == ["backbone_no_decay", "backbone_decay", "decoder", "text_encoder"]
    names = {id(p): n for n, p in model3.named_parameters()}
    by_group = {k: {names[id(p)] for p in g["params"]} for k, g in groups.items()}
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    for key in ("backbone_decay", "decoder", "text_encoder"):
        assert groups[key]["weight_decay"] == 0.01
    no_decay = by_group["backbone_no_decay"]
    assert all(n.startswith("backbone.") for n in no_decay | by_group["backbone_decay"])
    assert all(("norm" in n) or ("relative_position_bias_table" in n) for n in no_decay)
    assert "backbone.layers.0.blocks.0.attn.relative_position_bias_table" in no_decay
    assert "backbone.norm3.weight" in no_decay and "backbone.patch_embed.norm.bias" in no_decay
    assert "backbone.layers.0.downsample.norm.weight" in no_decay
    assert "backbone.layers.0.blocks.0.attn.qkv.bias" in by_group["backbone_decay"]
    assert by_group["decoder"] == {n for n, _ in model3.named_parameters() if "classifier." in n}
    assert (
        "classifier.bn1_4.weight" in by_group["decoder"]
    )  # decoder norms decay, as in the reference
    assert by_group["text_encoder"] == {
        n
        for n, _ in model3.named_parameters()
        if n.startswith(("text_encoder.encoder.layer.0.", "text_encoder.encoder.layer.1."))
    }
    # every trainable parameter in exactly one group, no frozen one anywhere
    listed = [n for g in by_group.values() for n in g]
    trainable = {n for n, p in model3.named_parameters() if p.requires_grad}
    assert len(listed) == len(set(listed)) and set(listed) == trainable
    assert "backbone.layers.3.res_gate.0.weight" not in trainable  # last gate feeds nothing


def test_optimizer_is_fused_adamw(model3):
    configure_text_trainable(model3, "none")
    opt = build_optimizer(model3, lr=5e-5, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["fused"] and opt.defaults["betas"] == (0.9, 0.999)
    assert [g["name"] for g in opt.param_groups] == [
        "backbone_no_decay",
        "backbone_decay",
        "decoder",
    ]
    assert all(g["lr"] == 5e-5 for g in opt.param_groups)


def test_poly_schedule_per_iteration():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}])
    for g in opt.param_groups:
        g["lr"] = 5e-5
    sched = build_scheduler(opt, total_iters=100)
    seen = []
    for _ in range(100):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for it, lrs in enumerate(seen):
        assert lrs == pytest.approx([5e-5 * (1 - it / 100) ** 0.9] * 2, rel=1e-9)
    assert opt.param_groups[0]["lr"] == 0.0


def test_warmup_then_poly():
    total, warm = 1000, 100
    assert lr_factor(0, total=total, warmup=warm) == pytest.approx(0.01 * (1.0) ** 0.9)
    assert lr_factor(49, total=total, warmup=warm) == pytest.approx(0.5 * (1 - 49 / total) ** 0.9)
    assert lr_factor(100, total=total, warmup=warm) == pytest.approx((1 - 0.1) ** 0.9)
    assert lr_factor(1000, total=total, warmup=warm) == 0.0
    factors = [lr_factor(i, total=total, warmup=warm) for i in range(total)]
    peak = max(range(total), key=factors.__getitem__)
    assert peak == warm - 1
