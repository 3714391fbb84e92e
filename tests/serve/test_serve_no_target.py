"""``lavt serve`` with a no-target head: found / no_target_probability per expression,
the same answers as the Predictor, and the classic model's area rule (in-process app)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from conftest import tiny_config
from lavt.errors import InputError
from lavt.modeling import build_model
from lavt.predict import Predictor
from lavt.serve.adapter import ModelAdapter
from lavt.serve.app import create_app
from lavt.serve.config import ServeConfig

TEXTS = ["the red circle", "a green square", "all shapes"]


def _head_model():
    torch.manual_seed(0)
    return build_model(tiny_config(text_dropout=0.0, no_target_head=True)).eval()


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))


def _segment(adapter: ModelAdapter, image: Image.Image) -> dict:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with TestClient(create_app(adapter, ServeConfig(max_wait_ms=0))) as client:
        reply = client.post(
            "/v1/segment",
            files={"image": ("x.png", buffer.getvalue())},
            data={"text": TEXTS},
        )
        model_info = client.get("/v1/model").json()
    assert reply.status_code == 200, reply.text
    return {**reply.json(), "model_info": model_info}


def test_head_model_answers_like_the_predictor():
    model = _head_model()
    adapter = ModelAdapter(model, device=torch.device("cpu"))
    body = _segment(adapter, _image())
    expected = Predictor(model, device="cpu").predict(_image(), TEXTS)
    assert body["model_info"]["no_target"] == {"head": True, "rule": "head", "area_threshold": 0}
    for result, prediction in zip(body["results"], expected, strict=True):
        assert result["found"] is prediction.found
        assert result["no_target_probability"] == pytest.approx(
            prediction.no_target_probability, abs=1e-5
        )
        assert result["area"] == int(prediction.mask.sum())
        # class 1 is "no object": found iff its probability is at most one half
        assert result["found"] is (result["no_target_probability"] <= 0.5)
        if not result["found"]:
            assert result["area"] == 0


def test_classic_model_uses_the_area_rule():
    torch.manual_seed(0)
    model = build_model(tiny_config(text_dropout=0.0)).eval()
    adapter = ModelAdapter(model, device=torch.device("cpu"), area_threshold=10**9)
    body = _segment(adapter, _image())
    assert body["model_info"]["no_target"]["rule"] == "area"
    for result in body["results"]:  # no mask can exceed the threshold: nothing found
        assert result["found"] is False and result["area"] == 0
        assert "no_target_probability" not in result


def test_head_rule_without_a_head_is_refused():
    model = build_model(tiny_config())
    with pytest.raises(InputError, match="head"):
        ModelAdapter(model, device=torch.device("cpu"), no_target_rule="head")
