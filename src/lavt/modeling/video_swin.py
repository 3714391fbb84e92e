"""The multi-modal Video Swin backbone of ``lavt_video`` (docs/video.md, "Architecture").

Video Swin (Liu et al., CVPR 2022; github.com/SwinTransformer/Video-Swin-Transformer)
with the spatio-temporal PWAM and the language gate after every stage, as in
LAVT-RS (Yang et al., TPAMI 2024; github.com/Yxxxb/LAVT-RS). The patch is one
frame deep, so every stage keeps one feature map per frame; patch merging
halves H and W only. Tokens are (B, D, H, W, C) inside, D = frames.

Facts kept for equivalence with the authors' model:

- along an axis no longer than the window (a short clip, a small map), the
  window is cut to the axis and that axis is not shifted (Video Swin's
  ``get_window_size``); the bias of a cut window is the top-left n x n block of
  the full window's (:meth:`lavt.modeling.window.WindowAttention.position_bias`);
- as in the image model, padding to the window comes after LayerNorm1 and the
  padded zeros are not masked out of attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lavt.modeling.config import LAVTVideoConfig
from lavt.modeling.fusion import LanguageGate
from lavt.modeling.swin import DropPath, Mlp, PatchMerging, StagedBackbone, stage_drop_paths
from lavt.modeling.video_fusion import SpatioTemporalPWAM
from lavt.modeling.window import (
    WindowAttention,
    cached_region_mask,
    window_partition,
    window_reverse,
)

Size3 = tuple[int, int, int]


def clip_window(
    sizes: Sequence[int], window: Sequence[int], shift: Sequence[int]
) -> tuple[Size3, Size3]:
    """Video Swin's window and shift for a (D, H, W) input: cut to short axes, unshifted."""
    fits = [s <= w for s, w in zip(sizes, window, strict=True)]
    cut = tuple(s if f else w for s, w, f in zip(sizes, window, fits, strict=True))
    moved = tuple(0 if f else h for h, f in zip(shift, fits, strict=True))
    return cut, moved


class SwinBlock3D(nn.Module):
    """A (shifted-)window attention block over (D, H, W) windows, then an MLP (pre-norm)."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window: Size3,
        shifted: bool,
        mlp_ratio: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, window=window, num_heads=num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, window: Size3, shift: Size3, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x: (B, D, H, W, C); this input's window and shift; the stage's shift mask or None."""
        B, D, H, W, C = x.shape
        pads = [(-s) % w for s, w in zip((D, H, W), window, strict=True)]
        y = F.pad(self.norm1(x), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))  # (B, Dp, Hp, Wp, C)
        padded = (D + pads[0], H + pads[1], W + pads[2])
        shift = shift if self.shifted else (0, 0, 0)
        rolled = any(shift)
        if rolled:
            y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        y = self.attn(window_partition(y, window), mask if rolled else None)  # (B, nW, n, C)
        y = window_reverse(y, window, *padded)  # (B, Dp, Hp, Wp, C)
        if rolled:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        x = x + self.drop_path(y[:, :D, :H, :W])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed3D(nn.Module):
    """Clip (B, T, 3, H, W) -> tokens (B, T, H/p, W/p, C0): pad, Conv3d per frame, LayerNorm."""

    def __init__(self, *, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        patch = (1, patch_size, patch_size)
        self.proj = nn.Conv3d(3, embed_dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        H, W = clip.shape[-2:]
        p = self.patch_size
        x = clip.transpose(1, 2)  # (B, T, 3, H, W) -> (B, 3, T, H, W)
        x = self.proj(F.pad(x, (0, (-W) % p, 0, (-H) % p)))  # (B, C0, T, H/p, W/p)
        return self.norm(x.permute(0, 2, 3, 4, 1))  # -> (B, T, H/p, W/p, C0)


class MultiModalStage3D(nn.Module):
    """Video Swin blocks, then the spatio-temporal PWAM + gate, then (optionally) patch merging."""

    def __init__(
        self,
        *,
        config: LAVTVideoConfig,
        stage: int,
        drop_paths: list[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        dim = config.stage_dim(stage)
        self.window = config.window_size
        self.shift = tuple(w // 2 for w in self.window)
        self.blocks = nn.ModuleList(
            SwinBlock3D(
                dim=dim,
                num_heads=config.num_heads[stage],
                window=self.window,
                shifted=i % 2 == 1,
                mlp_ratio=config.mlp_ratio,
                drop_path=drop_paths[i],
            )
            for i in range(config.depths[stage])
        )
        self.fusion = SpatioTemporalPWAM(
            dim=dim,
            text_dim=config.text.hidden_size,
            num_heads=config.pwam_heads[stage],
            dropout=config.fusion_drop,
            kernel_t=config.kernel_t,
            kernel_s=config.kernel_s,
        )
        gate = downsample or config.last_stage_gate
        self.res_gate = LanguageGate(dim) if gate else None
        self.downsample = PatchMerging(dim) if downsample else None
        if not downsample and self.res_gate is not None:
            # as in the image model: the last gate feeds nothing; kept for the layout
            self.res_gate.requires_grad_(False)
        self.grad_checkpointing = False
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def forward(
        self, x: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, D, H, W, C); lang: (B, D_text, N); lang_mask: (B, N, 1).

        Returns the fused features r (B, D, H, W, C), which feed the decoder, and
        the next stage's input (B, D, H/2, W/2, 2C) (the last stage: its blocks' output).
        """
        B, D, H, W, C = x.shape
        window, shift = clip_window((D, H, W), self.window, self.shift)
        mask = None
        if any(shift):
            padded = [s + (-s) % w for s, w in zip((D, H, W), window, strict=True)]
            mask = cached_region_mask(self._mask_cache, padded, window, shift, x.device)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, window, shift, mask, use_reentrant=False)
            else:
                x = block(x, window, shift, mask)
        fused = self.fusion(x, lang, lang_mask)  # (B, D, H, W, C)
        if self.downsample is not None:
            x = x + self.res_gate(fused) * fused
            x = self.downsample(x.reshape(B * D, H, W, C))  # (B*D, H/2, W/2, 2C)
            x = x.view(B, D, *x.shape[1:])  # -> (B, D, H/2, W/2, 2C)
        return fused, x


class MultiModalVideoSwin(StagedBackbone):
    """Video Swin backbone with language fusion after each stage.

    ``forward(clip (B, T, 3, H, W), lang (B, D, N), lang_mask (B, N, 1))``
    returns the four stage outputs ``LayerNorm_s(r_s)`` per frame, as
    (B*T, C_s, H_s, W_s) with frame t of clip b at row b*T + t, H_0 = ceil(H/4).
    """

    def __init__(self, config: LAVTVideoConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed3D(patch_size=config.patch_size, embed_dim=config.embed_dim)
        rates = stage_drop_paths(config.drop_path_rate, config.depths)
        self.layers = nn.ModuleList(
            MultiModalStage3D(
                config=config,
                stage=s,
                drop_paths=rates[s],
                downsample=s < len(config.depths) - 1,
            )
            for s in range(len(config.depths))
        )
        self.finish([config.stage_dim(s) for s in range(len(config.depths))])

    def forward(
        self, clip: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor
    ) -> list[torch.Tensor]:
        x = self.patch_embed(clip)  # (B, T, H_0, W_0, C_0)
        outputs = []
        for s, stage in enumerate(self.layers):
            fused, x = stage(x, lang, lang_mask)
            out = getattr(self, f"norm{s}")(fused)  # (B, T, H_s, W_s, C_s)
            out = out.flatten(0, 1)  # (B, T, H_s, W_s, C_s) -> (B*T, H_s, W_s, C_s)
            outputs.append(out.permute(0, 3, 1, 2).contiguous())  # -> (B*T, C_s, H_s, W_s)
        return outputs
