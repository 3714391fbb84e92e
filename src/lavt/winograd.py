"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3), for the bf16 CPU path.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016):
each 2x2 output tile of a 3x3, stride-1 convolution is ``A^T [(G g G^T) * (B^T d B)] A``
for the 4x4 input tile ``d`` and the 3x3 filter ``g``, with the transforms below
(the interpolation points 0, 1, -1, infinity). Across channels the elementwise
product becomes 16 matrix products of (tiles x C_in) @ (C_in x C_out): 16 multiplies
per 4 outputs instead of 36, 2.25x fewer FLOPs.

Used by ``--dtype bf16`` on a CPU (``lavt.precision``) for the decoder's 3x3
convolutions, which hold about 58% of Swin-B 480's FLOPs (docs/cpu_inference.md):
the filter transform is done once in float32 and cast to bf16, the input transform
in float32 (one rounding to bf16 before the products), the output transform in
the products' dtype. Exact in exact arithmetic; in bf16 its error is about twice
the direct bf16 convolution's (tests/modeling/test_winograd.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: transformed input elements a band of :meth:`WinogradConv2d._forward_eager` holds
BAND_ELEMENTS = 1 << 23

#: the filter transform G (4x3) of F(2, 3)
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def supports(conv: nn.Module) -> bool:
    """Whether ``conv`` is a convolution :class:`WinogradConv2d` computes: 3x3,
    stride 1, padding 1 (zeros), dilation 1, one group."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _bt(d: list[torch.Tensor], out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] applied along
    four equal-shaped slices ``d`` (written into ``out`` when given)."""
    o = out or [None] * 4
    return [
        torch.sub(d[0], d[2], out=o[0]),
        torch.add(d[1], d[2], out=o[1]),
        torch.sub(d[2], d[1], out=o[2]),
        torch.sub(d[1], d[3], out=o[3]),
    ]


def _at(m: list[torch.Tensor], out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] applied along four slices ``m``."""
    o = out or [None] * 2
    return [torch.add(m[0] + m[1], m[2], out=o[0]), torch.sub(m[1] - m[2], m[3], out=o[1])]


def _tiles(xp: torch.Tensor, axis: int, n: int) -> list[torch.Tensor]:
    """The four stride-2 slices of ``xp`` along ``axis`` that hold element k = 0..3 of
    each of ``n`` overlapping 4-wide tiles."""
    return [
        xp.narrow(axis, k, 2 * n - 1)[(slice(None),) * axis + (slice(None, None, 2),)]
        for k in range(4)
    ]


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, padding-1 ``nn.Conv2d`` computed by F(2x2, 3x3) in ``dtype``.

    ``x``: (B, C_in, H, W) of any floating dtype and memory format, or a list of its
    channel blocks -> (B, C_out, H, W) in ``dtype``, channels-last in memory (a
    permuted view of (B, H, W, C_out)). Eager, the input is transformed a band of
    tile rows at a time into a workspace of a fixed size (:data:`BAND_ELEMENTS`). Off
    the CPU (a cast model moved to a GPU) it is the direct convolution of ``weight``.
    """

    #: the decoder hands it a concatenation's parts instead of their copy
    takes_channel_blocks = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        c_out, c_in = weight.shape[:2]
        exact = torch.promote_types(weight.dtype, torch.float32)  # the transforms' dtype
        g = torch.tensor(_G, dtype=exact, device=weight.device)
        u = torch.einsum("ik,ockl,jl->ijco", g, weight.detach().to(exact), g)  # (4, 4, C_in, C_out)
        self.register_buffer("u", u.reshape(16, c_in, c_out).to(dtype), persistent=False)
        # the state dict keeps the convolution's keys (its weights in ``dtype``, like the
        # rest of a cast model), so a cast model's state dict has every key of the model's
        self.register_buffer("weight", weight.detach().to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype))
        self.in_channels, self.out_channels = c_in, c_out

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, dtype: torch.dtype) -> WinogradConv2d:
        """The Winograd form of ``conv`` (see :func:`supports`) computing in ``dtype``."""
        if not supports(conv):
            raise ValueError(f"conv {conv}: not a 3x3, stride-1, padding-1 convolution")
        return cls(conv.weight, conv.bias, dtype)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, F(2x2, 3x3), dtype={self.u.dtype}"

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """x: (B, C_in, H, W), or its channel blocks [(B, C_i, H, W)] (sum C_i = C_in,
        read in place: no concatenated copy) -> (B, C_out, H, W)."""
        parts = [x] if isinstance(x, torch.Tensor) else list(x)
        channels = sum(p.shape[1] for p in parts)
        if channels != self.in_channels or len({(p.shape[0], *p.shape[2:]) for p in parts}) != 1:
            sizes = " + ".join(str(tuple(p.shape)) for p in parts)
            raise ValueError(f"x: {sizes}, expected {self.in_channels} channels of one size")
        traced = torch.compiler.is_compiling() or (
            torch.is_grad_enabled() and any(p.requires_grad for p in parts)
        )
        if parts[0].device.type == "cpu" and not traced:
            return self._forward_eager(parts)
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, C_in, H, W)
        if x.device.type != "cpu":  # a cast model moved to a GPU: its own kernels
            return F.conv2d(x.to(self.weight.dtype), self.weight, self.bias, padding=1)
        return self._forward_traced(x)

    def _forward_eager(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """A band of tile rows at a time, each transform written into its buffer
        (``out=``): a workspace of about :data:`BAND_ELEMENTS` transformed inputs,
        whatever the batch and image size, reused from band to band."""
        B, _, H, W = parts[0].shape
        C, x = self.in_channels, parts[0]
        dtype, c_out = self.u.dtype, self.out_channels
        h, w = (H + 1) // 2, (W + 1) // 2  # output tiles; an odd side is padded by one
        rows = max(1, min(h, BAND_ELEMENTS // (16 * w * max(C, c_out))))  # tile rows a band
        exact = torch.promote_types(dtype, torch.float32)  # the input transform's dtype
        xp = x.new_zeros((2 * rows + 2, 2 * w + 2, C), dtype=exact)  # a band, zero-padded
        v = x.new_empty((4, 4, rows, w, C), dtype=dtype)  # its transformed tiles
        m = x.new_empty((16, rows * w, c_out), dtype=dtype)  # their products with u
        y = x.new_empty((B, h, 2, w, 2, c_out), dtype=dtype)
        for b in range(B):
            for i0 in range(0, h, rows):
                n = min(rows, h - i0)
                top = 2 * i0 - 1  # image row of the band's first padded row
                lo, hi = max(top, 0), min(top + 2 * n + 2, H)
                band = xp[: 2 * n + 2]
                band[: lo - top].zero_()
                c0 = 0
                for part in parts:  # its channels [c0, c0 + C_i) of the band
                    block = part[b, :, lo:hi].permute(1, 2, 0)  # (C_i, rows, W) -> (rows, W, C_i)
                    band[lo - top : hi - top, 1 : W + 1, c0 : c0 + block.shape[-1]].copy_(block)
                    c0 += block.shape[-1]
                band[hi - top :].zero_()
                for i, t in enumerate(_bt(_tiles(band, 0, n))):  # t: (n, 2w + 2, C)
                    _bt(_tiles(t, 1, w), out=[v[i, j, :n] for j in range(4)])  # 4 x (n, w, C)
                v16, m16 = v.view(16, rows * w, C)[:, : n * w], m[:, : n * w]
                for k in range(16):
                    torch.mm(v16[k], self.u[k], out=m16[k])  # (n*w, C_in) @ (C_in, C_out)
                m4 = m16.view(4, 4, n, w, c_out)
                for a, s in enumerate(_at(list(m4))):  # s: (4, n, w, C_out)
                    out = y[b, i0 : i0 + n, a]  # (n, w, 2, C_out)
                    _at(list(s), out=[out[:, :, 0], out[:, :, 1]])
        return self._finish(y, H, W)

    def _forward_traced(self, x: torch.Tensor) -> torch.Tensor:
        """The same products without ``out=`` (which dynamo cannot trace into slices and
        autograd cannot differentiate); the compiler fuses the transforms."""
        B, C, H, W = x.shape
        dtype, c_out = self.u.dtype, self.out_channels
        h, w = (H + 1) // 2, (W + 1) // 2
        exact = torch.promote_types(dtype, torch.float32)
        pad = (1, 2 * w + 1 - W, 1, 2 * h + 1 - H)
        xp = F.pad(x.to(exact), pad).permute(0, 2, 3, 1)  # (B, C, 2h+2, 2w+2) -> (B, 2h+2, 2w+2, C)
        v = [c for t in _bt(_tiles(xp, 1, h)) for c in _bt(_tiles(t, 2, w))]  # 16 x (B, h, w, C)
        v16 = torch.stack(v).to(dtype).view(16, B * h * w, C)
        m4 = torch.bmm(v16, self.u).view(4, 4, B, h, w, c_out)
        rows = [torch.stack(_at(list(s)), dim=3) for s in _at(list(m4))]  # 2 x (B, h, w, 2, C_out)
        return self._finish(torch.stack(rows, dim=2), H, W)  # (B, h, 2, w, 2, C_out)

    def _finish(self, y: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """y: (B, h, 2, w, 2, C_out) output tiles -> (B, C_out, H, W), bias added."""
        B, h, _, w, _, c_out = y.shape
        out = y.reshape(B, 2 * h, 2 * w, c_out)[:, :H, :W]  # (B, H, W, C_out)
        if self.bias is not None:
            out = out + self.bias
        return out.permute(0, 3, 1, 2)  # (B, H, W, C_out) -> (B, C_out, H, W)
