"""Reading a ``POST /v1/segment`` request: multipart or JSON, image and texts checked.

Images are decoded by :func:`lavt.imageio.load_image` (EXIF orientation,
every PIL mode to RGB, the decompression-bomb check against PIL's pixel
limit, which the app sets to ``max_pixels``). A string that is not base64
image data (a URL, for instance) is refused: the server never fetches anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request

from lavt.errors import InputError
from lavt.imageio import load_image_bytes
from lavt.serve.config import ServeConfig
from lavt.serve.errors import ApiError
from lavt.serve.limits import BodyTooLarge

TRUE_WORDS = {"1", "true", "yes", "on"}
DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


@dataclass
class SegmentRequest:
    image: bytes
    filename: str
    texts: list[str]
    return_png: bool


async def read_segment_request(request: Request, config: ServeConfig) -> SegmentRequest:
    """Parse the body by its content type; 415 for any other type, 422 for bad fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    query_png = request.query_params.get("return_png", "").lower() in TRUE_WORDS
    if content_type == "multipart/form-data":
        parsed = await _read_multipart(request, config)
    elif content_type == "application/json":
        parsed = await _read_json(request)
    else:
        raise ApiError(
            415,
            f"content type {content_type or 'none'!r}: send multipart/form-data "
            "(fields image, text) or application/json ({image: base64, texts: [...]})",
        )
    parsed.return_png = parsed.return_png or query_png
    check_texts(parsed.texts, config)
    return parsed


async def _read_multipart(request: Request, config: ServeConfig) -> SegmentRequest:
    try:
        form = await request.form(max_files=1, max_fields=config.max_expressions + 8)
    except BodyTooLarge:
        raise
    except Exception as err:  # python-multipart's and starlette's parse errors
        raise ApiError(422, f"malformed multipart body ({err})") from None
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "image: missing (send the picture as a file field named 'image')")
    texts = [t for t in form.getlist("text") if isinstance(t, str)]
    png = str(form.get("return_png", "")).lower() in TRUE_WORDS
    return SegmentRequest(await upload.read(), upload.filename or "upload", texts, png)


async def _read_json(request: Request) -> SegmentRequest:
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError) as err:  # JSONDecodeError, bad UTF-8, deep nesting
        raise ApiError(422, f"malformed JSON body ({str(err)[:200]})") from None
    if not isinstance(body, dict):
        raise ApiError(422, "JSON body must be an object {image, texts}")
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise ApiError(422, "image: missing (a base64 string of the image file)")
    texts = body.get("texts", body.get("text"))
    texts = [texts] if isinstance(texts, str) else texts
    texts = [] if texts is None else texts
    if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
        raise ApiError(422, "texts: must be a list of strings")
    png = body.get("return_png") is True
    return SegmentRequest(decode_base64(image), "image", texts, png)


def decode_base64(data: str) -> bytes:
    """Base64 (optionally a ``data:`` URL) -> bytes; anything else is a 422."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", data, re.IGNORECASE):
        raise ApiError(422, "image: URLs are not fetched; send the image itself as base64")
    data = DATA_URL.sub("", data, count=1)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "image: not valid base64") from None


def check_texts(texts: list[str], config: ServeConfig) -> None:
    """422 for no expression, too many, an empty one or one that is too long."""
    if not texts:
        raise ApiError(422, "text: no expression given")
    if len(texts) > config.max_expressions:
        raise ApiError(
            422, f"text: {len(texts)} expressions, at most {config.max_expressions} per request"
        )
    for k, text in enumerate(texts):
        if not text.strip():
            raise ApiError(422, f"text #{k + 1}: the expression is empty")
        if len(text) > config.max_text_chars:
            raise ApiError(
                422,
                f"text #{k + 1}: {len(text)} characters, at most {config.max_text_chars}",
            )


def decode_image(data: bytes, filename: str) -> Image.Image:
    """Bytes of an uploaded file -> RGB picture via :func:`lavt.imageio.load_image_bytes`
    (decoded from memory: no scratch file).

    415 when the bytes are not an image, 422 when it is empty, too large (bomb),
    truncated or otherwise unreadable; the message names the upload.
    """
    name = re.sub(r"[^\w.-]", "_", Path(filename).name).lstrip(".")[:100] or "upload"
    try:
        return load_image_bytes(data, name)
    except InputError as err:
        message = str(err)
        raise ApiError(415 if "not an image" in message else 422, message) from None
