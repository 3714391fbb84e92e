"""Window attention and its helpers, for image (H, W) and video (D, H, W) windows.

docs/model.md, "Window attention". Swin (Liu et al., ICCV 2021) and Video Swin
(Liu et al., CVPR 2022; github.com/SwinTransformer/Video-Swin-Transformer)
share these: window partition and reverse over any number of axes, the
relative-position index and bias, the shift mask. Attention runs through
``F.scaled_dot_product_attention`` with the relative-position bias and the
shift mask as its additive ``attn_mask``; bf16 inference on a CPU runs the same
attention as two batched matrix products around a softmax
(:func:`windowed_softmax_attention`), which is 1.5-1.9x faster there for windows of
144 tokens (docs/cpu_inference.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def window_shape(window: int | Sequence[int], ndim: int = 2) -> tuple[int, ...]:
    """A window as a tuple of sizes per axis: an int is a square ``ndim``-D window."""
    return (window,) * ndim if isinstance(window, int) else tuple(int(w) for w in window)


def relative_position_index(window: int | Sequence[int]) -> torch.Tensor:
    """(n, n) index into the prod(2 w_i - 1)-row bias table for token pairs of a window.

    ``window``: an int (a square 2-D window) or sizes per axis (d, h, w for a
    video window); n = prod(w_i), tokens row-major over the window's axes.
    """
    sizes = window_shape(window)
    grids = torch.meshgrid(*(torch.arange(w) for w in sizes), indexing="ij")
    coords = torch.stack(grids).flatten(1)  # (k, n): one row of coordinates per axis
    rel = coords[:, :, None] - coords[:, None, :]  # (k, n, n): offsets per axis
    index = torch.zeros_like(rel[0])
    for axis, w in enumerate(sizes):  # mixed radix, the last axis fastest
        index = index * (2 * w - 1) + rel[axis] + w - 1
    return index


def shift_mask(
    height: int, width: int, window: int, shift: int, device: torch.device | None = None
) -> torch.Tensor:
    """Additive mask (nW, w*w, w*w) separating the regions a cyclic shift brings together.

    ``height``/``width`` are already padded to multiples of ``window``.
    """
    return region_mask((height, width), (window, window), (shift, shift), device)


def region_mask(
    padded: Sequence[int],
    window: Sequence[int],
    shift: Sequence[int],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Shift mask of any number of axes: (nW, n, n), 0 within a region, -100 across.

    ``padded`` are the sizes (multiples of ``window``) before the cyclic shift by
    ``shift``; an axis with no shift is one region (Swin's and Video Swin's masks).
    """
    labels = torch.zeros(tuple(padded), device=device)
    for axis, (size, w, s) in enumerate(zip(padded, window, shift, strict=True)):
        line = torch.zeros(size, device=device)  # regions [0, P-w), [P-w, P-s), [P-s, P)
        if s:
            line[size - w : size - s] = 1
            line[size - s :] = 2
        view = [1] * len(padded)
        view[axis] = size
        labels = labels * 3 + line.view(view)
    windows = window_partition(labels[None, ..., None], window)[0, ..., 0]  # (nW, n)
    diff = windows[:, None, :] - windows[:, :, None]  # (nW, n, n)
    return torch.where(diff != 0, -100.0, 0.0)


def cached_region_mask(
    cache: dict[tuple, torch.Tensor],
    padded: Sequence[int],
    window: Sequence[int],
    shift: Sequence[int],
    device: torch.device,
) -> torch.Tensor:
    """:func:`region_mask` through a stage's small cache (per shape and device).

    Under ``torch.compile`` it is built in the graph, uncached (see
    :meth:`WindowAttention.attention_bias`).
    """
    if torch.compiler.is_compiling():
        return region_mask(padded, window, shift, device)
    key = (tuple(padded), tuple(window), tuple(shift), str(device))
    if key not in cache:
        if len(cache) > 32:
            cache.clear()
        cache[key] = region_mask(padded, window, shift, device)
    return cache[key]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative-position bias.

    ``window``: an int (w x w image windows) or sizes per axis (a video's
    (d, h, w) windows); the bias table has prod(2 w_i - 1) rows.
    """

    def __init__(self, *, dim: int, window: int | Sequence[int], num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.window = window_shape(window)
        self.num_heads = num_heads
        rows = math.prod(2 * w - 1 for w in self.window)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        self.register_buffer(
            "relative_position_index", relative_position_index(self.window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self._bias_cache: tuple | None = None

    def position_bias(self, n: int) -> torch.Tensor:
        """(h, n, n) bias gathered from the table for the first n tokens of a window.

        n is the window's token count, or fewer where Video Swin cuts a window to
        a short clip: it then takes the top-left n x n block of the full window's
        index (github.com/SwinTransformer/Video-Swin-Transformer, kept by LAVT-RS).
        """
        index = self.relative_position_index[:n, :n].reshape(-1)
        bias = self.relative_position_bias_table[index]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (n, n, h) -> (h, n, n)

    def attention_bias(self, mask: torch.Tensor | None, dtype: torch.dtype, n: int) -> torch.Tensor:
        """Relative-position bias plus shift mask: (1, h, n, n) or (1, nW*h, n, n).

        Always 4-D: a 3-D ``attn_mask`` sends SDPA to its unfused math path on the
        CPU (3x slower per call than the flash kernel in float32 and bf16).

        Without gradients (inference) it is cached per mask, window length and
        weights version, so repeated eager calls with the same shape reuse it. Under
        ``torch.compile`` it is built in the graph (the compiler folds it): the
        cache's data-pointer key would break the graph, and filling it would
        change the guarded module state and recompile.
        """
        table = self.relative_position_bias_table
        cacheable = not (torch.is_grad_enabled() and table.requires_grad)
        if torch.compiler.is_compiling():
            return self._bias(mask, dtype, n)
        key = (mask, dtype, n, table.data_ptr(), table._version)
        cache = self._bias_cache
        if cacheable and cache is not None and _same_key(cache[0], key):
            return cache[1]
        bias = self._bias(mask, dtype, n)
        # a training forward must build its own bias (it carries the graph)
        self._bias_cache = (key, bias) if cacheable else None
        return bias

    def _bias(self, mask: torch.Tensor | None, dtype: torch.dtype, n: int) -> torch.Tensor:
        """Position bias (+ mask (nW, n, n)) -> (1, h, n, n) or (1, nW*h, n, n) in
        ``dtype``, contiguous (a strided bias slows the add into the scores 10x)."""
        if mask is None:
            return self.position_bias(n).unsqueeze(0).to(dtype).contiguous()  # (1, h, n, n)
        nW = mask.shape[0]
        bias = self.position_bias(n).unsqueeze(0) + mask.unsqueeze(1)  # (nW, h, n, n)
        return bias.reshape(1, nW * self.num_heads, n, n).to(dtype)  # (1, nW*h, n, n)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """windows: (B, nW, n, C), n tokens a window; mask (nW, n, n) or None -> (B, nW, n, C)."""
        return self.proj(self.attend(self.qkv(windows), mask))

    def attend(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The attention between ``qkv`` and ``proj``: qkv (B, nW, n, 3C) -> (B, nW, n, C).

        Split out so that a caller can run the per-token ``qkv``/``proj`` on fewer
        tokens (before padding, after cropping: :class:`lavt.modeling.swin.SwinBlock`).
        """
        B, nW, n, C3 = qkv.shape
        C = C3 // 3
        h = self.num_heads
        qkv = qkv.view(B, nW, n, 3, h, C // h)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5)  # (B, nW, n, 3, h, C/h) -> (3, B, nW, h, n, C/h)
        bias = self.attention_bias(mask, qkv.dtype, n)
        if mask is None:  # one bias for all windows: windows join the batch axis
            q, k, v = qkv.reshape(3, B * nW, h, n, C // h).unbind(0)  # each (B*nW, h, n, C/h)
        else:  # a bias per window: windows join the head axis
            q, k, v = qkv.reshape(3, B, nW * h, n, C // h).unbind(0)  # each (B, nW*h, n, C/h)
        if _batched_products_pay(q):
            out = windowed_softmax_attention(q, k, v, bias)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.reshape(B, nW, h, n, C // h).transpose(2, 3)  # -> (B, nW, n, h, C/h)
        return out.reshape(B, nW, n, C)  # (B, nW, n, C)


#: the largest window (tokens) whose attention runs as batched products (image Swin: 144)
MAX_PRODUCT_WINDOW = 256


def _batched_products_pay(q: torch.Tensor) -> bool:
    """Whether :func:`windowed_softmax_attention` replaces SDPA for ``q`` (G, H, n, d):
    bf16 on a CPU without a gradient to keep, eager, windows of at most
    :data:`MAX_PRODUCT_WINDOW` tokens. The CPU's flash kernel splits a window's 144
    queries into blocks of 32 and spends more time around its small products than
    in them; in float32 it is as fast as the products (measured:
    docs/cpu_inference.md). A training step keeps SDPA (its backward does not
    store the (n, n) probabilities), torch.compile gets SDPA to fuse, and a large
    window (a video's 8x12x12 = 1152 tokens) too: its (n, n) scores would cost
    n elements per token and head."""
    return (
        q.shape[-2] <= MAX_PRODUCT_WINDOW
        and q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and not (torch.is_grad_enabled() and q.requires_grad)
        and not torch.compiler.is_compiling()
    )


def windowed_softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v as two batched matrix products.

    q, k, v: (G, H, n, d); bias: (1, H, n, n), broadcast over G -> (G, H, n, d).
    The scores are in q's dtype (SDPA's flash kernel keeps them in float32; the
    mask's agreement with the reference is the same: docs/cpu_inference.md); the
    softmax accumulates in float32.
    """
    G, H, n, d = q.shape
    q = (q * d**-0.5).reshape(G * H, n, d)  # (G, H, n, d) -> (G*H, n, d)
    scores = torch.bmm(q, k.reshape(G * H, n, d).transpose(1, 2))  # (G*H, n, n)
    scores.view(G, H, n, n).add_(bias)  # in place: no second (G*H, n, n) buffer
    probs = torch.softmax(scores, dim=-1)  # (G*H, n, n)
    return torch.bmm(probs, v.reshape(G * H, n, d)).view(G, H, n, d)


def _same_key(a: tuple, b: tuple) -> bool:
    """Cache keys (mask, dtype, n, data_ptr, version): the same mask object (or None),
    the rest equal."""
    return a[0] is b[0] and a[1:] == b[1:]


def window_partition(x: torch.Tensor, window: int | Sequence[int]) -> torch.Tensor:
    """(B, *S, C), each S_i a multiple of w_i -> (B, nW, n, C), windows and tokens row-major.

    An int ``window`` is square over every axis of S (H, W for an image).
    """
    B, *sizes, C = x.shape
    k = len(sizes)
    win = window_shape(window, k)
    split = [d for s, w in zip(sizes, win, strict=True) for d in (s // w, w)]
    x = x.view(B, *split, C)  # (B, S_1/w_1, w_1, .., S_k/w_k, w_k, C)
    order = (0, *range(1, 2 * k, 2), *range(2, 2 * k + 1, 2), 2 * k + 1)
    x = x.permute(order)  # (B, S_1/w_1, .., S_k/w_k, w_1, .., w_k, C)
    return x.reshape(B, -1, math.prod(win), C)  # (B, nW, n, C)


def window_reverse(windows: torch.Tensor, window: int | Sequence[int], *sizes: int) -> torch.Tensor:
    """(B, nW, n, C) -> (B, *sizes, C), inverse of :func:`window_partition`."""
    B, _, _, C = windows.shape
    k = len(sizes)
    win = window_shape(window, k)
    x = windows.view(B, *(s // w for s, w in zip(sizes, win, strict=True)), *win, C)
    order = (0, *(d for i in range(k) for d in (1 + i, 1 + k + i)), 2 * k + 1)
    x = x.permute(order)  # (B, S_1/w_1, w_1, .., S_k/w_k, w_k, C)
    return x.reshape(B, *sizes, C)
