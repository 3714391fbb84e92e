"""The per-request work off the event loop: decoding from memory, and the answer's body
(masks, RLE/PNG, JSON) built in one worker-thread call, byte for byte what the app
answered before (Starlette's JSONResponse of the same content)."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.responses import JSONResponse
from PIL import Image

from lavt import load_model
from lavt.assets import default_model_path
from lavt.imageio import load_image
from lavt.predict.encode import encode_prediction
from lavt.serve.adapter import ModelAdapter
from lavt.serve.errors import ApiError
from lavt.serve.inputs import decode_image
from lavt.serve.respond import segment_body

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


@pytest.fixture(scope="module")
def adapter():
    return ModelAdapter(load_model(default_model_path()), device=torch.device("cpu"))


def test_decode_from_memory_equals_the_file_reader(tmp_path):
    rotated = Image.new("RGB", (30, 20), (10, 200, 30))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees on display
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif)
    path = tmp_path / "photo.jpg"
    path.write_bytes(buffer.getvalue())
    from_memory = decode_image(buffer.getvalue(), "photo.jpg")
    assert from_memory.size == (20, 30)  # transposed as a viewer shows it
    np.testing.assert_array_equal(np.asarray(from_memory), np.asarray(load_image(path)))
    with pytest.raises(ApiError, match=r"^upload.png: image file is empty") as info:
        decode_image(b"", "upload.png")
    assert info.value.status == 422
    with pytest.raises(ApiError, match="unreadable or truncated") as info:
        decode_image(buffer.getvalue()[:200], "cut.jpg")
    assert info.value.status == 422


@pytest.mark.parametrize("return_png", [False, True])
def test_body_is_what_the_app_answered_before(adapter, return_png):
    example = json.loads((EXAMPLES / "examples.json").read_text())[0]
    picture = decode_image((EXAMPLES / example["file"]).read_bytes(), example["file"])
    prepared = adapter.prepare(picture, example["texts"][:2])
    outputs = adapter.forward(prepared.pixels.expand(2, -1, -1, -1), prepared.input_ids,
                              prepared.attention_mask)  # fmt: skip
    body = segment_body(adapter, outputs, prepared, return_png=return_png)
    predictions = adapter.postprocess(outputs, prepared.texts, prepared.height, prepared.width)
    before = JSONResponse(
        {
            "width": prepared.width,
            "height": prepared.height,
            "model": adapter.name,
            "results": [
                {**encode_prediction(p, return_png=return_png), "unknown_words": words}
                for p, words in zip(predictions, prepared.unknown_words, strict=True)
            ],
        }
    )
    assert body == before.body
    assert ("png" in json.loads(body)["results"][0]) == return_png
