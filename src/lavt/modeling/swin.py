"""The multi-modal Swin Transformer backbone (docs/model.md, "Window attention").

Swin (Liu et al., ICCV 2021; github.com/microsoft/Swin-Transformer) with a
PWAM and a language gate after every stage, as in LAVT (Yang et al., CVPR 2022).
Tokens are NHWC inside the backbone and NCHW at its boundary (timm's
convention). Window attention (:mod:`lavt.modeling.window`) adds the
relative-position bias and the shift mask to the attention scores.

Facts kept for equivalence with the released weights: padding to a multiple of
the window comes after LayerNorm1 and the padded (zero) tokens are not masked
out of attention; the window and shift are kept even when the map is smaller
than the window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lavt.modeling.config import LAVTConfig
from lavt.modeling.fusion import PWAM, LanguageGate
from lavt.modeling.window import (
    WindowAttention,
    cached_region_mask,
    relative_position_index,
    shift_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "DropPath",
    "MultiModalSwin",
    "PatchMerging",
    "WindowAttention",
    "relative_position_index",
    "shift_mask",
]


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (Huang et al., 2016)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """A (shifted-)window attention block followed by an MLP, both pre-norm residual."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, window=window, num_heads=num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H, W, C); mask: the stage's shift mask (nW, n, n) -> (B, H, W, C)."""
        B, H, W, C = x.shape
        w = self.window
        y = self.norm1(x)
        pad_h, pad_w = (-H) % w, (-W) % w
        Hp, Wp = H + pad_h, W + pad_w
        if pad_h or pad_w:
            # the padded tokens are zeros after the norm, so they all have the qkv of a
            # zero token (the bias): project the H x W real tokens only, then pad with it
            fill = self.attn.qkv(y.new_zeros(1, C))[0]  # (3C,)
            y = pad_with(self.attn.qkv(y), fill, Hp, Wp)  # (B, Hp, Wp, 3C)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_partition(y, w)  # (B, nW, n, C or 3C)
        if not (pad_h or pad_w):
            y = self.attn.qkv(y)  # (B, nW, n, 3C)
        y = self.attn.attend(y, mask if self.shift else None)  # (B, nW, n, C)
        y = window_reverse(y, w, Hp, Wp)  # (B, Hp, Wp, C)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = self.attn.proj(y[:, :H, :W, :].contiguous())  # per token: padded ones dropped first
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def pad_with(x: torch.Tensor, value: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, height, width, C), the new tokens set to ``value`` (C,)."""
    B, H, W, C = x.shape
    out = value.to(x.dtype).expand(B, height, width, C).clone()  # (C,) -> (B, height, width, C)
    out[:, :H, :W] = x
    return out


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated and projected: (B, H, W, C) -> (B, H/2, W/2, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))  # (B, H', W', C), even sides
        parts = (x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2])
        x = torch.cat(parts, dim=-1)  # (B, H'/2, W'/2, 4C)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Image -> (B, H/4, W/4, C0) tokens: pad to a multiple of the patch, conv, LayerNorm."""

    def __init__(self, *, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        H, W = image.shape[-2:]
        p = self.patch_size
        image = F.pad(image, (0, (-W) % p, 0, (-H) % p))
        x = self.proj(image)  # (B, C0, H/4, W/4)
        return self.norm(x.permute(0, 2, 3, 1))  # (B, C0, H, W) -> (B, H, W, C0)


class MultiModalStage(nn.Module):
    """Swin blocks, then PWAM + language gate, then (optionally) patch merging."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        drop_paths: list[float],
        text_dim: int,
        pwam_heads: int,
        fusion_drop: float,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim=dim,
                num_heads=num_heads,
                window=window,
                shift=0 if i % 2 == 0 else self.shift,
                mlp_ratio=mlp_ratio,
                drop_path=drop_paths[i],
            )
            for i in range(depth)
        )
        self.fusion = PWAM(dim=dim, text_dim=text_dim, num_heads=pwam_heads, dropout=fusion_drop)
        self.res_gate = LanguageGate(dim)
        self.downsample = PatchMerging(dim) if downsample else None
        if not downsample:
            # The last stage's gated x feeds nothing (the decoder takes r), so its
            # gate is kept for the released state-dict layout but never computed
            # or trained: every trainable parameter then gets a gradient and DDP
            # needs no find_unused_parameters.
            self.res_gate.requires_grad_(False)
        self.grad_checkpointing = False
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def attention_mask(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Shift mask for an (H, W) map, cached per padded shape and device."""
        w = self.window
        padded = (height + (-height) % w, width + (-width) % w)
        return cached_region_mask(self._mask_cache, padded, (w, w), (self.shift,) * 2, device)

    def forward(
        self, x: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, H, W, C); lang: (B, D, N); lang_mask: (B, N, 1).

        Returns the fused features r (B, H, W, C), which feed the decoder, and
        the next stage's input (B, H/2, W/2, 2C) (the last stage returns its
        blocks' output: the gated x would feed nothing).
        """
        B, H, W, C = x.shape
        mask = self.attention_mask(H, W, x.device)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        tokens = x.reshape(B, H * W, C)  # (B, H, W, C) -> (B, HW, C)
        fused = self.fusion(tokens, lang, lang_mask)  # (B, HW, C)
        if self.downsample is not None:
            tokens = tokens + self.res_gate(fused) * fused
            x = self.downsample(tokens.view(B, H, W, C))  # (B, HW, C) -> (B, H, W, C) -> merged
        return fused.view(B, H, W, C), x  # (B, HW, C) -> (B, H, W, C)


def stage_drop_paths(rate: float, depths: tuple[int, ...]) -> list[list[float]]:
    """Stochastic-depth rates of every block, rising linearly from 0 to ``rate``, per stage."""
    total = sum(depths)
    rates = [rate * i / max(total - 1, 1) for i in range(total)]
    starts = [sum(depths[:s]) for s in range(len(depths))]
    return [rates[start : start + depth] for start, depth in zip(starts, depths, strict=True)]


class StagedBackbone(nn.Module):
    """What the image and video backbones share: per-stage output norms, Swin's init and
    gradient checkpointing of the blocks; subclasses build ``patch_embed`` and ``layers``."""

    layers: nn.ModuleList

    def finish(self, stage_dims: list[int]) -> None:
        """Add ``norm0..norm3`` for the stage widths, then initialise every weight as Swin does."""
        for s, dim in enumerate(stage_dims):
            self.add_module(f"norm{s}", nn.LayerNorm(dim))
        self.apply(init_swin_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute Swin blocks in the backward pass: less memory, more compute."""
        for stage in self.layers:
            stage.grad_checkpointing = enable


class MultiModalSwin(StagedBackbone):
    """Swin backbone with language fusion after each stage.

    ``forward(image (B,3,H,W), lang (B,D,N), lang_mask (B,N,1))`` returns the
    four stage outputs ``LayerNorm_s(r_s)`` as (B, C_s, H_s, W_s), H_1 = ceil(H/4).
    """

    def __init__(self, config: LAVTConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size=config.patch_size, embed_dim=config.embed_dim)
        rates = stage_drop_paths(config.drop_path_rate, config.depths)
        self.layers = nn.ModuleList(
            MultiModalStage(
                dim=config.stage_dim(s),
                depth=depth,
                num_heads=config.num_heads[s],
                window=config.window_size,
                mlp_ratio=config.mlp_ratio,
                drop_paths=rates[s],
                text_dim=config.text.hidden_size,
                pwam_heads=config.pwam_heads[s],
                fusion_drop=config.fusion_drop,
                downsample=s < len(config.depths) - 1,
            )
            for s, depth in enumerate(config.depths)
        )
        self.finish([config.stage_dim(s) for s in range(len(config.depths))])

    def forward(
        self, image: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor
    ) -> list[torch.Tensor]:
        x = self.patch_embed(image)  # (B, H1, W1, C0)
        outputs = []
        for s, stage in enumerate(self.layers):
            fused, x = stage(x, lang, lang_mask)
            out = getattr(self, f"norm{s}")(fused)  # (B, H_s, W_s, C_s)
            outputs.append(out.permute(0, 3, 1, 2).contiguous())  # -> (B, C_s, H_s, W_s)
        return outputs


def init_swin_weights(module: nn.Module) -> None:
    """Swin's init: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0), bias tables."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, WindowAttention):
        nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
