"""The video PWAM: pixel-word attention with separate temporal and spatial 3-D convolutions.

LAVT-RS (Yang et al., TPAMI 2024; github.com/Yxxxb/LAVT-RS, ``SepTPWAM`` with
``--w_t3x3_s1x1 --mm_t3x3_s1x1``). Every projection of the image PWAM that
looks at pixels becomes the sum of a temporal branch (a 3-D convolution of
``kernel_t``, e.g. 3x3x3, over frames and pixels) and a spatial branch
(``kernel_s``, e.g. 1x1x1); the attention over the words is the image
model's (:func:`lavt.modeling.fusion.word_attention`)::

    vis   = GELU(Conv_t(x)) + GELU(Conv_s(x))
    query = IN(Conv_t(x)) + IN(Conv_s(x))
    lang  = IN(Conv_t(a)) + IN(Conv_s(a)),  a = word_attention(query, words)
    r     = GELU(Conv_t(vis * lang)) + GELU(Conv_s(vis * lang))

Module names follow the LAVT-RS checkpoints (``temporal_vis_project``,
``f_query_t``, ``W_t``, ``project_mm_t`` and their ``_s`` twins, ``f_key``,
``f_value``) so that their state dicts load without renaming; the spatial
``W_s`` and ``project_mm_s`` are 1x1x1 whatever ``kernel_s`` is, as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lavt.modeling.fusion import InstanceNorm, PointwiseConv1d, word_attention


def _conv3d(dim: int, kernel: Sequence[int]) -> nn.Conv3d:
    """A stride-1 3-D convolution keeping the (D, H, W) size (odd kernels, padding k // 2)."""
    return nn.Conv3d(dim, dim, tuple(kernel), padding=tuple(k // 2 for k in kernel))


def _projection(dim: int, kernel: Sequence[int], dropout: float) -> nn.Sequential:
    """Conv3d -> GELU -> Dropout (the visual and multi-modal projections)."""
    return nn.Sequential(_conv3d(dim, kernel), nn.GELU(), nn.Dropout(dropout))


def _normalised(dim: int, kernel: Sequence[int]) -> nn.Sequential:
    """Conv3d -> InstanceNorm over (D, H, W) (the query and output projections)."""
    return nn.Sequential(_conv3d(dim, kernel), InstanceNorm())


class SpatioTemporalPWAM(nn.Module):
    """PWAM over a clip: (B, D, H, W, C) visual tokens, (B, D_text, N) words -> (B, D, H, W, C)."""

    def __init__(
        self,
        *,
        dim: int,
        text_dim: int,
        num_heads: int = 1,
        dropout: float = 0.0,
        kernel_t: Sequence[int] = (3, 3, 3),
        kernel_s: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"PWAM width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.temporal_vis_project = _projection(dim, kernel_t, dropout)
        self.spatial_vis_project = _projection(dim, kernel_s, dropout)
        self.f_query_t = _normalised(dim, kernel_t)
        self.f_query_s = _normalised(dim, kernel_s)
        self.f_key = nn.Sequential(PointwiseConv1d(text_dim, dim))
        self.f_value = nn.Sequential(PointwiseConv1d(text_dim, dim))
        self.W_t = _normalised(dim, kernel_t)
        self.W_s = _normalised(dim, (1, 1, 1))
        self.project_mm_t = _projection(dim, kernel_t, dropout)
        self.project_mm_s = _projection(dim, (1, 1, 1), dropout)

    def forward(self, x: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, D, H, W, C); lang: (B, D_text, N); lang_mask: (B, N, 1) -> (B, D, H, W, C)."""
        B, D, H, W, C = x.shape
        v = x.permute(0, 4, 1, 2, 3)  # (B, D, H, W, C) -> (B, C, D, H, W)
        vis = self.temporal_vis_project(v) + self.spatial_vis_project(v)  # (B, C, D, H, W)
        query = self.f_query_t(v) + self.f_query_s(v)  # (B, C, D, H, W)
        mask_t = lang_mask.transpose(1, 2)  # (B, N, 1) -> (B, 1, N)
        key = self.f_key(lang) * mask_t  # (B, C, N)
        value = self.f_value(lang) * mask_t  # (B, C, N)
        attended = word_attention(query.flatten(2), key, value, lang_mask, self.num_heads)
        attended = attended.view(B, C, D, H, W)  # (B, C, DHW) -> (B, C, D, H, W)
        lang_feat = self.W_t(attended) + self.W_s(attended)  # (B, C, D, H, W)
        mm = vis * lang_feat
        mm = self.project_mm_t(mm) + self.project_mm_s(mm)  # (B, C, D, H, W)
        return mm.permute(0, 2, 3, 4, 1)  # (B, C, D, H, W) -> (B, D, H, W, C)
