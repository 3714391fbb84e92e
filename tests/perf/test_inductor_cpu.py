"""``torch.compile`` (inductor, which builds C++ kernels with the system compiler) on the CPU.

A tiny model: compiled inference equals eager within 1e-3 in float32, and a compiled
training step runs and gives eager's loss and gradients.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model_and_inputs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("g++") is None, reason="inductor on the CPU needs g++"),
]

TOLERANCE = 1e-3


def test_compiled_inference_matches_eager():
    torch._dynamo.reset()
    model, inputs = tiny_model_and_inputs()
    model.eval()
    compiled = torch.compile(model)
    with torch.no_grad():
        want = model(*inputs)
        got = compiled(*inputs)
        again = compiled(*inputs)  # the cached attention bias path
    torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=TOLERANCE)
    torch.testing.assert_close(again, want, atol=TOLERANCE, rtol=TOLERANCE)


def test_compiled_training_step_matches_eager():
    torch._dynamo.reset()
    model, inputs = tiny_model_and_inputs()
    model.train()
    target = torch.zeros(2, 64, 64, dtype=torch.long)
    target[:, 16:40, 8:50] = 1

    def step(runner):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(runner(*inputs), target)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    eager_loss, eager_grads = step(model)
    compiled_loss, compiled_grads = step(torch.compile(model))
    torch.testing.assert_close(compiled_loss, eager_loss, atol=1e-5, rtol=1e-4)
    assert compiled_grads.keys() == eager_grads.keys()
    # some gradients are zero up to rounding (a bias before InstanceNorm): below 1% of the
    # largest, compare them with that 1%
    floor = 1e-2 * max(g.abs().max().item() for g in eager_grads.values())
    for name, grad in eager_grads.items():
        scale = grad.abs().max().clamp(min=floor)
        err = ((compiled_grads[name] - grad).abs().max() / scale).item()
        assert err < TOLERANCE, f"{name}: relative gradient error {err:.1e}"
