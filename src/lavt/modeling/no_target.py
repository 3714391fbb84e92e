"""Saying "no object": the optional no-target head and the two decision rules.

GRES (Liu, Ding and Jiang, CVPR 2023) lets an expression name no object. ReLA,
its model, predicts that with a 2-way classifier (class 1 = "no object") trained
by cross-entropy beside the mask loss. LAVT has no such output, so there are two
ways to decide (docs/gres.md, "No-target decision"):

- ``"head"``: :class:`NoTargetHead`, a small MLP over the global average of the
  decoder's last feature map (the language-aware pixel features just before the
  mask classifier) and the masked mean of the sentence's word features;
  ``pred_nt = logit_1 > logit_0`` (a tie counts as "target", as in the GRES code);
- ``"area"``: ``pred_nt = |P| <= tau``, the predicted mask's area in pixels at the
  model's input size (img_size x img_size), tau = 0 by default. Works with any
  checkpoint, including the released ones; not the GRES protocol, so tau is reported.

``"auto"`` takes the head when the model has one, else the area rule.
"""

from __future__ import annotations

import torch
from torch import nn

from lavt.errors import InputError

RULES = ("auto", "head", "area")


class NoTargetHead(nn.Module):
    """Pooled decoder features + pooled sentence -> 2 logits (class 1 = "no object").

    Adapted from ReLA's no-target classifier (an MLP whose 2 logits are averaged over
    its region queries, henghuiding/ReLA); LAVT has no queries, so we pool pixels.
    """

    def __init__(self, *, visual_dim: int, text_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or visual_dim
        self.mlp = nn.Sequential(
            nn.Linear(visual_dim + text_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2),
        )

    def forward(
        self, features: torch.Tensor, text: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """features (B, C, H_1, W_1), text (B, N, D), attention_mask (B, N) -> (B, 2)."""
        visual = features.mean(dim=(2, 3))  # (B, C, H_1, W_1) -> (B, C)
        weights = attention_mask.to(text.dtype).unsqueeze(-1)  # (B, N, 1)
        sentence = (text * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D)
        return self.mlp(torch.cat([visual, sentence.to(visual.dtype)], dim=1))  # (B, 2)


def check_rule(rule: str, area_threshold: int) -> None:
    """Refuse an unknown rule or a negative threshold (one-line errors)."""
    if rule not in RULES:
        raise InputError(
            f"no_target_rule {rule!r}: expected one of {', '.join(RULES)}", param="no_target_rule"
        )
    if area_threshold < 0:
        raise InputError(f"area_threshold {area_threshold}: must be >= 0", param="area_threshold")


def resolve_rule(rule: str, has_head: bool) -> str:
    """``auto`` -> ``head`` or ``area``; ``head`` without a head is an error."""
    if rule == "auto":
        return "head" if has_head else "area"
    if rule == "head" and not has_head:
        raise InputError(
            "no_target_rule head: this model has no no-target head; use the area rule",
            param="no_target_rule",
        )
    return rule


def no_target_probability(no_target_logits: torch.Tensor) -> torch.Tensor:
    """(B, 2) -> (B,) float32 probability of "no object" (softmax of the two logits)."""
    return no_target_logits.float().softmax(-1)[:, 1]


def decide_no_target(
    logits: torch.Tensor,
    no_target_logits: torch.Tensor | None,
    *,
    rule: str,
    area_threshold: int = 0,
) -> torch.Tensor:
    """``pred_nt`` (B,) bool from mask logits (B, 2, S, S) and, for ``head``, (B, 2).

    ``rule`` is ``head`` or ``area`` (see :func:`resolve_rule`); the area is counted
    on the logits as given (the model's input size).
    """
    if rule == "head":
        if no_target_logits is None:
            raise ValueError("rule 'head' needs the no-target logits")
        return no_target_logits[:, 1] > no_target_logits[:, 0]
    area = (logits[:, 1] > logits[:, 0]).flatten(1).sum(1)  # (B, S, S) -> (B,)
    return area <= area_threshold
