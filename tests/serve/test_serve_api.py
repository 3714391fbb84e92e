"""API tests against a real uvicorn server: every input kind and every error."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from lavt.imageio import to_rgb

pytest_plugins = ["serve_helpers"]

pytestmark = pytest.mark.slow

TEXTS = ["big blue disc", "the big green disc"]


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def assert_serving(url: str) -> None:
    """The server still answers health checks and real requests."""
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    image = Image.new("RGB", (20, 10), (90, 90, 90))
    reply = httpx.post(
        f"{url}/v1/segment", files={"image": ("g.png", png_bytes(image))}, data={"text": "x"}
    )
    assert reply.status_code == 200, reply.text


def assert_error(reply: httpx.Response, status: int, words: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["status"] == status
    assert words in error["message"]


def check_against_predictor(body: dict, predictor, image, texts) -> None:
    expected = predictor.predict(image, texts)
    assert [r["text"] for r in body["results"]] == texts
    for result, prediction in zip(body["results"], expected, strict=True):
        mask = decode(result["rle"])
        np.testing.assert_array_equal(mask, prediction.mask)
        assert result["area"] == int(prediction.mask.sum())
        assert result["score"] == pytest.approx(prediction.mean_foreground_probability, abs=1e-5)


# ----------------------------------------------------------------------------- good requests


def test_multipart_matches_predictor(server, example_image, predictor):
    with open(example_image, "rb") as f:
        reply = httpx.post(
            f"{server}/v1/segment",
            files={"image": ("scene.jpg", f, "image/jpeg")},
            data={"text": TEXTS},
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["width"], body["height"]) == Image.open(example_image).size
    assert body["model"] == "lavt_synthetic"
    check_against_predictor(body, predictor, example_image, TEXTS)
    for result in body["results"]:
        assert result["rle"]["size"] == [body["height"], body["width"]]
        assert result["area"] > 100  # the example's expressions name objects in it
        assert 0.5 < result["score"] <= 1.0
        assert "png" not in result
        x, y, w, h = result["bbox"]
        ys, xs = np.nonzero(decode(result["rle"]))
        width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        assert (x, y, w, h) == (xs.min(), ys.min(), width, height)


def test_json_base64_and_data_url(server, example_image, predictor):
    data = base64.b64encode(example_image.read_bytes()).decode()
    for image in (data, f"data:image/jpeg;base64,{data}"):
        reply = httpx.post(f"{server}/v1/segment", json={"image": image, "texts": TEXTS})
        assert reply.status_code == 200, reply.text
        check_against_predictor(reply.json(), predictor, example_image, TEXTS)


def test_return_png_equals_rle(server, example_image):
    data = base64.b64encode(example_image.read_bytes()).decode()
    reply = httpx.post(
        f"{server}/v1/segment", json={"image": data, "texts": TEXTS, "return_png": True}
    )
    multipart = httpx.post(
        f"{server}/v1/segment?return_png=true",
        files={"image": ("s.jpg", example_image.read_bytes())},
        data={"text": TEXTS[0]},
    )
    for result in [*reply.json()["results"], *multipart.json()["results"]]:
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["png"]))))
        np.testing.assert_array_equal(png > 127, decode(result["rle"]))


def test_image_modes_and_exif(server, predictor):
    """RGBA, grayscale and an EXIF-rotated JPEG are read as `lavt predict` reads them."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    base.save(rotated, format="JPEG", exif=exif)
    for name, data in (
        ("rgba.png", png_bytes(base.convert("RGBA"))),
        ("gray.png", png_bytes(base.convert("L"))),
        ("rot.jpg", rotated.getvalue()),
    ):
        reply = httpx.post(
            f"{server}/v1/segment", files={"image": (name, data)}, data={"text": "red circle"}
        )
        assert reply.status_code == 200, (name, reply.text)
        body = reply.json()
        picture = Image.open(io.BytesIO(data))
        picture = to_rgb(ImageOps.exif_transpose(picture))
        assert (body["width"], body["height"]) == picture.size
        check_against_predictor(body, predictor, picture, ["red circle"])


def test_healthz_model_metrics_page(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    info = httpx.get(f"{server}/v1/model").json()
    assert info["input_size"] == [64, 64]
    assert info["vocabulary"]["kind"] == "checkpoint"
    assert info["checkpoint"] == "lavt_synthetic.safetensors"
    assert info["architecture"]["variant"] == "lavt_one"
    assert info["limits"]["max_expressions"] == 4
    metrics = httpx.get(f"{server}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("lavt_requests_total", "lavt_request_latency_seconds_bucket",
                 "lavt_batch_size_bucket", "lavt_queue_length"):  # fmt: skip
        assert name in metrics.text
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from the internet
    for asset in ("app.js", "style.css", "examples/examples.json", "examples/scene-1.jpg"):
        assert httpx.get(f"{server}/static/{asset}").status_code == 200, asset
    assert (
        "access-control-allow-origin"
        not in httpx.get(f"{server}/healthz", headers={"Origin": "http://elsewhere.test"}).headers
    )


def test_examples_mention_objects_in_their_scenes(server):
    """Each bundled example's expressions find an object (non-empty, confident mask)."""
    for example in httpx.get(f"{server}/static/examples/examples.json").json():
        image = httpx.get(f"{server}/static/examples/{example['file']}").content
        reply = httpx.post(
            f"{server}/v1/segment",
            files={"image": (example["file"], image)},
            data={"text": example["texts"]},
        )
        for result in reply.json()["results"]:
            assert result["area"] > 100 and result["score"] > 0.7, (example["file"], result)


# ----------------------------------------------------------------------------- errors


def post(server: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server}/v1/segment", **kwargs)


def image_part(data: bytes, name: str = "x.png") -> dict:
    return {"image": (name, data)}


GOOD = png_bytes(Image.new("RGB", (16, 16), (200, 30, 30)))
TWO_IMAGES = [("image", ("a.png", GOOD)), ("image", ("b.png", GOOD))]


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"files": image_part(b"hello, not an image"), "data": {"text": "a"}}, 415, "not an image"),
        ({"files": image_part(GOOD[:60]), "data": {"text": "a"}}, 422, "truncated"),
        ({"files": image_part(b""), "data": {"text": "a"}}, 422, "empty"),
        ({"files": image_part(GOOD)}, 422, "no expression"),
        ({"files": image_part(GOOD), "data": {"text": ["a"] * 5}}, 422, "at most 4"),
        ({"files": image_part(GOOD), "data": {"text": "x" * 61}}, 422, "at most 60"),
        ({"files": image_part(GOOD), "data": {"text": "   "}}, 422, "empty"),
        ({"files": {"text": (None, "a")}}, 422, "image: missing"),
        ({"files": TWO_IMAGES, "data": {"text": "a"}}, 422, "multipart"),
        ({"files": image_part(GOOD), "data": {"text": ["a"] * 500}}, 422, "at most 4"),
        ({"data": {"text": "a"}}, 415, "x-www-form-urlencoded"),
        ({"json": {"texts": ["a"]}}, 422, "image: missing"),
        ({"json": {"image": "%%%notbase64", "texts": ["a"]}}, 422, "base64"),
        ({"json": {"image": "https://example.com/cat.jpg", "texts": ["a"]}}, 422, "not fetched"),
        ({"json": {"image": base64.b64encode(GOOD).decode(), "texts": []}}, 422, "no expression"),
        ({"json": {"image": base64.b64encode(GOOD).decode(), "texts": [1]}}, 422, "strings"),
        ({"json": ["not", "an", "object"]}, 422, "object"),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"content": b"[" * 200_000, "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"content": b"\xff\xfe{", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "content type"),
    ],
)
def test_bad_request_is_a_json_error_and_server_keeps_serving(server, kwargs, status, words):
    assert_error(post(server, **kwargs), status, words)
    assert_serving(server)


def test_decompression_bomb(server):
    """A 25-megapixel PNG of a few KB (over --max-pixels 1e6): 422, nothing decoded."""
    bomb = png_bytes(Image.new("L", (5000, 5000)))
    assert len(bomb) < 100_000
    assert_error(post(server, files=image_part(bomb, "bomb.png"), data={"text": "a"}), 422, "large")
    slightly_over = png_bytes(Image.new("RGB", (1001, 1000)))
    assert_error(
        post(server, files=image_part(slightly_over), data={"text": "a"}), 422, "too large"
    )
    assert_serving(server)


def test_unknown_route_and_method(server):
    assert_error(httpx.get(f"{server}/nope"), 404, "Not Found")
    assert_error(httpx.get(f"{server}/v1/segment"), 405, "Method Not Allowed")
    assert_serving(server)


def test_errors_are_counted(server):
    post(server, content=b"abc", headers={"content-type": "text/plain"})
    text = httpx.get(f"{server}/metrics").text
    assert 'lavt_requests_total{status="415"}' in text
    assert 'lavt_requests_total{status="200"}' in text
