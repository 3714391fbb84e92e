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

import torch
import torch.nn.functional as F
from torch import nn

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

    ``x``: (B, C_in, H, W) of any floating dtype and memory format -> (B, C_out, H, W)
    in ``dtype``, channels-last in memory (a permuted view of (B, H, W, C_out)).
    Images are transformed one at a time, so the workspace (about 10 bytes per
    input element in bf16) does not grow with the batch.
    """

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H, W)."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: {x.shape[1]} channels, expected {self.in_channels}")
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and x.requires_grad):
            return self._forward_traced(x)
        return self._forward_eager(x)

    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """One image at a time, each transform written into its buffer (``out=``): no
        temporaries of the tiles' size, and a workspace that does not grow with B."""
        B, C, H, W = x.shape
        dtype, c_out = self.u.dtype, self.out_channels
        h, w = (H + 1) // 2, (W + 1) // 2  # output tiles; an odd side is padded by one
        exact = torch.promote_types(dtype, torch.float32)  # the input transform's dtype
        xp = x.new_zeros((2 * h + 2, 2 * w + 2, C), dtype=exact)
        v = x.new_empty((4, 4, h, w, C), dtype=dtype)  # transformed tiles
        m = x.new_empty((16, h * w, c_out), dtype=dtype)  # their products with u
        y = x.new_empty((B, h, 2, w, 2, c_out), dtype=dtype)
        for b in range(B):
            xp[1 : H + 1, 1 : W + 1].copy_(x[b].permute(1, 2, 0))  # (C, H, W) -> (H, W, C)
            for i, t in enumerate(_bt(_tiles(xp, 0, h))):  # t: (h, 2w + 2, C)
                _bt(_tiles(t, 1, w), out=list(v[i]))  # 4 x (h, w, C)
            v16 = v.view(16, h * w, C)
            for k in range(16):
                torch.mm(v16[k], self.u[k], out=m[k])  # (h*w, C_in) @ (C_in, C_out)
            m4 = m.view(4, 4, h, w, c_out)
            for a, s in enumerate(_at(list(m4))):  # s: (4, h, w, C_out)
                _at(list(s), out=[y[b, :, a, :, 0], y[b, :, a, :, 1]])
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
