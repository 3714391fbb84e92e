"""Pixel-word attention (PWAM) and the language gate.

docs/model.md, "Pixel-word attention" and "Language gate".

Module and parameter names follow the released checkpoints
(``fusion.{vis_project,image_lang_att.{f_query,f_key,f_value,W},project_mm}``,
``res_gate``) so that their state dicts load without renaming.
"""

from __future__ import annotations

import torch
from torch import nn


class PointwiseConv1d(nn.Conv1d):
    """A kernel-size-1 ``Conv1d`` computed as a batched matrix product.

    Same parameters and state-dict keys as ``nn.Conv1d(in_dim, out_dim, 1)``. On
    the CPU, oneDNN's 1x1 convolution over long sequences is several times
    slower than a matrix product (about 10x in bf16 at Swin-B's first stage).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, L) -> (B, C_out, L)."""
        weight = self.weight.squeeze(-1).expand(x.shape[0], -1, -1)  # (B, C_out, C_in)
        return torch.baddbmm(self.bias.view(1, -1, 1), weight, x)  # bias (C_out,) -> (1, C_out, 1)


class InstanceNorm(nn.Module):
    """Per-channel normalisation over the axes after the channels, no affine.

    ``InstanceNorm1d`` on (B, C, L), ``InstanceNorm3d`` on (B, C, D, H, W).

    Written out so that a 1-pixel feature map (a tiny input) gives zeros
    instead of ``InstanceNorm1d``'s error.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *S) -> (B, C, *S), computed in float32 (as autocast does for LayerNorm).

        In float16 the backward of ``rsqrt(var + eps)``, up to 0.5 * eps ** -1.5
        = 1.6e7, overflows (max 65504): every fp16 training step was skipped.
        """
        x32 = x.float()
        axes = tuple(range(2, x.ndim))
        var, mean = torch.var_mean(x32, dim=axes, keepdim=True, correction=0)
        return ((x32 - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)


class PixelWordAttention(nn.Module):
    """Attention of every pixel over the words; returns language features per pixel.

    The logits are scaled by ``C ** -0.5`` with C the total key width, even with
    several heads (a quirk of the released models, kept for equivalence).
    """

    def __init__(self, *, dim: int, text_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"PWAM width {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.num_heads = num_heads
        self.f_query = nn.Sequential(PointwiseConv1d(dim, dim), InstanceNorm())
        self.f_key = nn.Sequential(PointwiseConv1d(text_dim, dim))
        self.f_value = nn.Sequential(PointwiseConv1d(text_dim, dim))
        self.W = nn.Sequential(PointwiseConv1d(dim, dim), InstanceNorm())

    def forward(self, x: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, HW); lang: (B, D, N); lang_mask: (B, N, 1) -> (B, C, HW)."""
        mask_t = lang_mask.transpose(1, 2)  # (B, N, 1) -> (B, 1, N)
        key = self.f_key(lang) * mask_t  # (B, C, N)
        value = self.f_value(lang) * mask_t  # (B, C, N)
        out = word_attention(self.f_query(x), key, value, lang_mask, self.num_heads)
        return self.W(out)


def word_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    lang_mask: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    """Attention of every position over the words, the core of every PWAM.

    query (B, C, L) per pixel (or per pixel of every frame); key, value
    (B, C, N), already zeroed at padded words; lang_mask (B, N, 1) -> (B, C, L).
    Channels are split into ``num_heads`` consecutive groups; the logits are
    scaled by ``C ** -0.5`` with C the total width, even with several heads (a
    quirk of the released image and video models, kept for equivalence).
    """
    B, C, L = query.shape
    k = num_heads
    N = key.shape[-1]
    mask_t = lang_mask.transpose(1, 2)  # (B, N, 1) -> (B, 1, N)
    query = query.reshape(B, k, C // k, L).transpose(2, 3)  # (B, k, L, C/k)
    key = key.reshape(B, k, C // k, N)  # (B, k, C/k, N)
    value = value.reshape(B, k, C // k, N).transpose(2, 3)  # (B, k, N, C/k)
    sim = torch.matmul(query, key) * (C**-0.5)  # (B, k, L, N)
    sim = sim + (10000.0 * mask_t.unsqueeze(1) - 10000.0)  # padded words -> -10000
    out = torch.matmul(sim.softmax(dim=-1), value)  # (B, k, L, C/k)
    return out.transpose(2, 3).reshape(B, C, L)  # (B, k, C/k, L) -> (B, C, L)


class PWAM(nn.Module):
    """Pixel-word attention module: visual features gated by attended language.

    ``r = GELU(Conv(vis * lang))`` with ``vis = GELU(Conv(x))`` and ``lang`` the
    pixel-word attention output.
    """

    def __init__(
        self, *, dim: int, text_dim: int, num_heads: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.vis_project = nn.Sequential(PointwiseConv1d(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.image_lang_att = PixelWordAttention(dim=dim, text_dim=text_dim, num_heads=num_heads)
        self.project_mm = nn.Sequential(PointwiseConv1d(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, HW, C); lang: (B, D, N); lang_mask: (B, N, 1) -> (B, HW, C)."""
        x_t = x.transpose(1, 2)  # (B, HW, C) -> (B, C, HW)
        vis = self.vis_project(x_t)  # (B, C, HW)
        lang_feat = self.image_lang_att(x_t, lang, lang_mask)  # (B, C, HW)
        mm = self.project_mm(vis * lang_feat)  # (B, C, HW)
        return mm.transpose(1, 2)  # (B, C, HW) -> (B, HW, C)


class LanguageGate(nn.Sequential):
    """``tanh(Linear(ReLU(Linear(r))))``: how much of the fused features to add back."""

    def __init__(self, dim: int) -> None:
        super().__init__(
            nn.Linear(dim, dim, bias=False),
            nn.ReLU(),
            nn.Linear(dim, dim, bias=False),
            nn.Tanh(),
        )
