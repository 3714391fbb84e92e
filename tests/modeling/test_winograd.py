"""The bf16 CPU path's kernels: Winograd F(2x2, 3x3) convolutions (lavt.winograd) and the
window attention as batched products (lavt.modeling.window)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lavt.modeling.window as window
import lavt.precision as precision
import lavt.winograd as winograd
from lavt import load_model
from lavt.assets import default_model_path
from lavt.precision import cast_for_inference
from lavt.runtime import autocast
from lavt.winograd import WinogradConv2d, supports


@pytest.mark.parametrize(
    ("batch", "channels", "height", "width", "bias"),
    [(2, 8, 7, 9, True), (1, 16, 6, 6, False), (3, 5, 1, 1, True), (1, 4, 2, 3, False)],
)
@pytest.mark.parametrize("traced", [False, True])
def test_exact_in_float64(batch, channels, height, width, bias, traced):
    """Even, odd and 1-pixel sides, a batch, a bias: the convolution to rounding."""
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, 6, 3, padding=1, bias=bias).double()
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    fast = WinogradConv2d.from_conv(conv, torch.float64)
    got = fast._forward_traced(x) if traced else fast(x)
    assert got.shape == (batch, 6, height, width)
    torch.testing.assert_close(got, conv(x), rtol=0, atol=1e-12)


def test_bf16_error_is_within_three_times_the_direct_bf16_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 32, 3, padding=1, bias=False)
    x = torch.randn(2, 64, 20, 24)
    with torch.no_grad():
        want = conv(x)
        direct = F.conv2d(x.bfloat16(), conv.weight.bfloat16(), padding=1).float()
        fast = WinogradConv2d.from_conv(conv, torch.bfloat16)(x)
    assert fast.dtype == torch.bfloat16
    err_direct = float((direct - want).abs().mean())
    err_fast = float((fast.float() - want).abs().mean())
    assert 0 < err_fast <= 3 * err_direct, (err_fast, err_direct)


def test_gradients_flow_through_the_traced_form():
    conv = nn.Conv2d(3, 2, 3, padding=1).double()
    x = torch.randn(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    fast = WinogradConv2d.from_conv(conv, torch.float64)
    (grad,) = torch.autograd.grad(fast(x).sum(), x)
    (want,) = torch.autograd.grad(conv(x).sum(), x)
    torch.testing.assert_close(grad, want)


def test_eager_and_traced_forms_agree_in_bf16():
    """The compiler's form computes the same products in the same dtypes."""
    torch.manual_seed(0)
    fast = WinogradConv2d.from_conv(nn.Conv2d(24, 16, 3, padding=1), torch.bfloat16)
    x = torch.randn(3, 24, 13, 10)
    torch.testing.assert_close(fast(x), fast._forward_traced(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 1),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    ],
)
def test_other_convolutions_refused(conv):
    assert not supports(conv)
    with pytest.raises(ValueError, match="conv"):
        WinogradConv2d.from_conv(conv, torch.bfloat16)


def test_wrong_channel_count_named():
    fast = WinogradConv2d.from_conv(nn.Conv2d(4, 4, 3, padding=1), torch.float32)
    with pytest.raises(ValueError, match=r"x: \(1, 3, 5, 5\), expected 4 channels"):
        fast(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="expected 4 channels of one size"):
        fast([torch.zeros(1, 2, 5, 5), torch.zeros(1, 2, 5, 6)])


@pytest.mark.parametrize("traced", [False, True])
def test_channel_blocks_and_bands(monkeypatch, traced):
    """Blocks read in place equal their concatenation; bands of 1-3 tile rows (the
    first and last clipped by the padding, an odd height) equal one band."""
    torch.manual_seed(0)
    conv = nn.Conv2d(7, 5, 3, padding=1).double()
    fast = WinogradConv2d.from_conv(conv, torch.float64)
    parts = [torch.randn(2, 3, 11, 8, dtype=torch.float64), torch.randn(2, 4, 11, 8)]
    parts[1] = parts[1].double().contiguous(memory_format=torch.channels_last)
    want = conv(torch.cat(parts, dim=1))
    for rows in (1, 2, 3):
        monkeypatch.setattr(winograd, "BAND_ELEMENTS", 16 * 4 * 7 * rows)  # w = 4 tiles
        with torch.set_grad_enabled(traced):
            got = fast([p.requires_grad_(traced) for p in parts])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_bf16_copy_computes_the_decoder_by_winograd_on_a_cpu(monkeypatch, caplog):
    """Where the probe finds it faster (forced here: on the bundled model's 64-wide
    decoder it is slower, 0.3x on the development machine)."""
    monkeypatch.setattr(precision, "winograd_speedup", lambda width: 1.5)
    model = load_model(default_model_path())
    with caplog.at_level("INFO", logger="lavt"):
        fast = cast_for_inference(model, "bf16")
    assert "convolutions: Winograd F(2x2, 3x3) (probe, 64 channels: Winograd 1.50x" in caplog.text
    convs = [n for n, m in fast.classifier.named_children() if isinstance(m, WinogradConv2d)]
    assert convs == ["conv1_4", "conv2_4", "conv1_3", "conv2_3", "conv1_2", "conv2_2"]
    assert type(model.classifier.conv1_2) is nn.Conv2d  # the caller's model untouched
    assert set(fast.state_dict()) == set(model.state_dict())
    for other in ("bf16-all", "fp32"):
        kept = cast_for_inference(model, other).classifier.conv1_2
        assert type(kept) is nn.Conv2d, other
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 64, 64, generator=g)
    ids = torch.randint(1, 40, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    with torch.inference_mode():
        want = model(image, ids, mask)
        with autocast("cpu", torch.bfloat16):
            got = fast(image, ids, mask)
    assert got.is_contiguous()
    agree = float((got.argmax(1) == want.argmax(1)).float().mean())
    assert agree >= 0.99, agree


def _windows(dtype: torch.dtype, groups: int = 3, heads: int = 4, n: int = 49, d: int = 8):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(groups, heads, n, d, generator=g).to(dtype) for _ in range(3))
    return q, k, v, torch.randn(1, heads, n, n, generator=g).to(dtype)


def test_batched_products_attention_is_sdpa():
    q, k, v, bias = _windows(torch.float64)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    got = window.windowed_softmax_attention(q, k, v, bias)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_batched_products_only_for_bf16_inference_on_a_cpu():
    q = _windows(torch.bfloat16)[0]
    with torch.inference_mode():
        assert window._batched_products_pay(q)
        assert not window._batched_products_pay(q.float())
        assert not window._batched_products_pay(_windows(torch.bfloat16, n=257)[0])
    trained = q.clone().requires_grad_()
    assert not window._batched_products_pay(trained)  # a training step keeps SDPA's backward
    with torch.no_grad():
        assert window._batched_products_pay(trained)


def test_direct_convolutions_where_the_probe_finds_winograd_slower(monkeypatch, caplog):
    widths = []
    monkeypatch.setattr(precision, "winograd_speedup", lambda w: widths.append(w) or 0.9)
    with caplog.at_level("INFO", logger="lavt"):
        fast = cast_for_inference(load_model(default_model_path()), "bf16")
    assert widths == [64]
    assert not any(isinstance(m, WinogradConv2d) for m in fast.modules())
    assert "convolutions: direct (probe, 64 channels: Winograd 0.90x" in caplog.text


def test_winograd_probe_measures_both():
    """A real measurement: positive, finite, cached per width."""
    precision.winograd_speedup.cache_clear()
    speedup = precision.winograd_speedup(16, size=8, reps=1)
    assert 0 < speedup < float("inf")
    assert precision.winograd_speedup(16, size=8, reps=1) == speedup


def test_one_graph_under_torch_compile():
    """Compiled, the traced form runs (no out= into slices): one graph, the eager values."""
    torch._dynamo.reset()
    fast = WinogradConv2d.from_conv(nn.Conv2d(8, 6, 3, padding=1), torch.bfloat16)
    parts = [torch.randn(2, 3, 7, 6), torch.randn(2, 5, 7, 6)]
    with torch.inference_mode():
        explained = torch._dynamo.explain(fast)(parts)
        assert explained.graph_count == 1 and not explained.break_reasons
        compiled = torch.compile(fast, backend="eager")(parts)
        torch.testing.assert_close(compiled, fast(parts), rtol=0, atol=0)


def test_off_the_cpu_the_direct_convolution_runs():
    """A cast model moved to another device convolves directly with the kept weights
    (meta tensors stand in for a GPU's here)."""
    conv = nn.Conv2d(6, 4, 3, padding=1)
    fast = WinogradConv2d.from_conv(conv, torch.bfloat16).to("meta")
    out = fast([torch.empty(2, 2, 9, 7, device="meta"), torch.empty(2, 4, 9, 7, device="meta")])
    assert out.shape == (2, 4, 9, 7) and out.dtype == torch.bfloat16 and out.device.type == "meta"
