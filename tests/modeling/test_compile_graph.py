"""``torch.compile`` sees the whole forward as one graph, also after eager calls.

Eager inference fills the attention-bias and shift-mask caches; a model compiled
afterwards (the benchmark, the predictor with ``--compile``) must neither break its
graph on the cache's data-pointer key nor recompile when a cache changes. Dynamo
alone (``backend="eager"``) checks this without building kernels.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model_and_inputs


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_one_graph_after_eager_calls(mode):
    torch._dynamo.reset()
    model, inputs = tiny_model_and_inputs()
    model.train(mode == "training")
    grad = torch.enable_grad() if mode == "training" else torch.inference_mode()
    with grad:
        model(*inputs)  # eager first: the caches are filled
        explained = torch._dynamo.explain(model)(*inputs)
    reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_count == 1 and not reasons, reasons


def test_no_recompilation_across_calls():
    torch._dynamo.reset()
    model, inputs = tiny_model_and_inputs()
    model.eval()
    compiled = torch.compile(model, backend="eager")
    with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
        want = model(*inputs)
        first = compiled(*inputs)
        model(*inputs)  # an eager call between compiled ones
        again = compiled(*inputs)
    torch.testing.assert_close(first, want)
    torch.testing.assert_close(again, want)
