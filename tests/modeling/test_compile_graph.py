"""``torch.compile`` sees the whole forward as one graph, also after eager calls.

Eager inference fills the attention-bias and shift-mask caches; a model compiled
afterwards (the benchmark, the predictor with ``--compile``) must neither break its
graph on the cache's data-pointer key nor recompile when a cache changes. Dynamo
alone (``backend="eager"``) checks this without building kernels.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from lavt.modeling import build_model


def _model_and_inputs(train: bool):
    torch.manual_seed(0)
    model = build_model(tiny_config(text_dropout=0.0)).train(train)
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 64, 64, generator=g)
    ids = torch.randint(1000, 30000, (2, 20), generator=g)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 9:] = 0
    return model, (image, ids, mask)


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_one_graph_after_eager_calls(mode):
    torch._dynamo.reset()
    model, inputs = _model_and_inputs(train=mode == "training")
    grad = torch.enable_grad() if mode == "training" else torch.inference_mode()
    with grad:
        model(*inputs)  # eager first: the caches are filled
        explained = torch._dynamo.explain(model)(*inputs)
    reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_count == 1 and not reasons, reasons


def test_no_recompilation_across_calls():
    torch._dynamo.reset()
    model, inputs = _model_and_inputs(train=False)
    compiled = torch.compile(model, backend="eager")
    with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
        want = model(*inputs)
        first = compiled(*inputs)
        model(*inputs)  # an eager call between compiled ones
        again = compiled(*inputs)
    torch.testing.assert_close(first, want)
    torch.testing.assert_close(again, want)
