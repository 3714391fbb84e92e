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
from starlette.requests import Request

from lavt.errors import InputError
from lavt.imageio import load_image_bytes
from lavt.serve.config import ServeConfig
from lavt.serve.errors import ApiError
from lavt.serve.multipart import MultipartError, Upload, read_form

#: spellings of a yes/no field in a query string or a multipart form (any case)
FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}  # fmt: skip
DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
#: form fields parsed at most, whatever --max-expressions says (memory bound; each
#: field costs far more as a Python object than its bytes in the body)
MAX_FORM_FIELDS = 1024


@dataclass
class SegmentRequest:
    image: bytes
    filename: str
    texts: list[str]
    return_png: bool


def form_fields_limit(config: ServeConfig) -> int:
    """The multipart parser's field limit: above any allowed request, so that too many
    ``text`` fields get the expression-count message, not the parser's."""
    return max(MAX_FORM_FIELDS, 2 * config.max_expressions + 16)


def parse_flag(value: object, name: str) -> bool:
    """A query or form value of a yes/no field -> bool; 422 naming ``name`` otherwise."""
    if isinstance(value, str) and value.lower() in FLAG_WORDS:
        return FLAG_WORDS[value.lower()]
    shown = repr(value[:20]) if isinstance(value, str) else "a file"
    raise ApiError(422, f"{name}: {shown} is not a yes/no value (true, false, 1, 0)")


#: the query parameters of POST /v1/segment (anything else is a 422)
QUERY_PARAMETERS = frozenset({"return_png"})


async def read_segment_request(request: Request, config: ServeConfig) -> SegmentRequest:
    """Parse the body by its content type; 415 for any other type, 422 for bad fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    unknown = sorted(set(request.query_params) - QUERY_PARAMETERS)
    if unknown:  # a mistyped ?retun_png=true is refused, not ignored (the schema lists them)
        raise ApiError(
            422,
            f"query parameter {unknown[0][:40]!r}: unknown (accepted: "
            f"{', '.join(sorted(QUERY_PARAMETERS))})",
        )
    query = request.query_params.get("return_png")
    query_png = False if query is None else parse_flag(query, "return_png")
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
    limit = form_fields_limit(config)
    try:
        form = await read_form(request, max_files=1, max_fields=limit)
    except MultipartError as err:
        if "Too many fields" in str(err):
            raise ApiError(422, too_many_texts(f"over {limit}", config)) from None
        raise ApiError(422, f"malformed multipart body ({err})") from None
    upload = form.get("image")
    if not isinstance(upload, Upload):
        raise ApiError(422, "image: missing (send the picture as a file field named 'image')")
    texts = form.getlist("text")  # strings: the one file allowed is the image
    png = form.get("return_png")
    png = False if png is None else parse_flag(png, "return_png")
    return SegmentRequest(upload.data, upload.filename or "upload", texts, png)


def _json_texts(body: dict) -> list[str]:
    """``texts`` (or its alias ``text``): a string or a list of strings."""
    if "texts" in body and "text" in body:
        raise ApiError(422, "texts: give either 'texts' or 'text', not both")
    name = "texts" if "texts" in body else "text"
    texts = body.get(name)
    if texts is None:
        return []
    texts = [texts] if isinstance(texts, str) else texts
    if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
        raise ApiError(422, f"{name}: must be a list of strings")
    return texts


async def _read_json(request: Request) -> SegmentRequest:
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError) as err:  # JSONDecodeError, bad UTF-8, deep nesting
        raise ApiError(422, f"malformed JSON body ({str(err)[:200]})") from None
    if not isinstance(body, dict):
        raise ApiError(422, "JSON body must be an object {image, texts}")
    image = body.get("image")
    if image is None or image == "":
        raise ApiError(422, "image: missing (a base64 string of the image file)")
    if not isinstance(image, str):
        raise ApiError(422, "image: must be a string (the image file in base64)")
    texts = _json_texts(body)
    png = body.get("return_png", False)
    if not isinstance(png, bool):
        raise ApiError(422, "return_png: must be true or false (a JSON boolean)")
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


def too_many_texts(count: str, config: ServeConfig) -> str:
    """The one message for too many expressions, JSON and multipart alike."""
    return f"text: {count} expressions, at most {config.max_expressions} per request"


def check_texts(texts: list[str], config: ServeConfig) -> None:
    """422 for no expression, too many, an empty one or one that is too long."""
    if not texts:
        raise ApiError(422, "text: no expression given")
    if len(texts) > config.max_expressions:
        raise ApiError(422, too_many_texts(str(len(texts)), config))
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
