"""The one-pass multipart reader of ``POST /v1/segment`` reads what Starlette's
``request.form()`` reads, with its messages, whatever the chunking of the body."""

from __future__ import annotations

import asyncio

import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from lavt.serve.multipart import MAX_FIELD_BYTES, MultipartError, Upload, read_form

BOUNDARY = "b0und"


def body(*parts: tuple[str, str | None, bytes], extra: str = "") -> bytes:
    """(name, filename or None, data) parts -> a multipart body."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def request(data: bytes, chunk: int, content_type: str) -> Request:
    chunks = [data[k : k + chunk] for k in range(0, len(data), chunk)] or [b""]

    async def receive():
        piece = chunks.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(chunks)}

    headers = [(b"content-type", content_type.encode())]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def ours(data: bytes, chunk: int = 10**9, content_type: str = "", **limits):
    content_type = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    limits = {"max_files": 1, "max_fields": 8, **limits}
    form = asyncio.run(read_form(request(data, chunk, content_type), **limits))
    return [(k, (v.filename, v.data) if isinstance(v, Upload) else v) for k, v in form.items]


def starlettes(data: bytes, content_type: str = "", **limits):
    content_type = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    limits = {"max_files": 1, "max_fields": 8, **limits}

    async def read():
        form = await request(data, 10**9, content_type).form(**limits)
        items = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                value = (value.filename, await value.read())
            items.append((key, value))
        return items

    return asyncio.run(read())


IMAGE = bytes(range(256)) * 40  # every byte value, CR and LF included


@pytest.mark.parametrize("chunk", [1, 7, 1000, 10**9])
def test_same_parts_as_starlette_in_any_chunking(chunk):
    data = body(("image", "a b.png", IMAGE), ("text", None, b"the dog"),
                ("text", None, "café ☕".encode()), ("return_png", None, b"true"))  # fmt: skip
    expected = starlettes(data)
    assert expected[0] == ("image", ("a b.png", IMAGE))
    assert ours(data, chunk) == expected


def test_charset_and_its_fallback_as_starlette():
    data = body(("text", None, "été".encode("latin-1")))
    for content_type in (f"multipart/form-data; boundary={BOUNDARY}; charset=latin-1",
                         f"multipart/form-data; boundary={BOUNDARY}; charset=nonsense",
                         f"multipart/form-data; boundary={BOUNDARY}"):  # fmt: skip
        assert ours(data, content_type=content_type) == starlettes(data, content_type)


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (body(("image", "a.png", b"1"), ("image", "b.png", b"2")), "",
         "Too many files. Maximum number of files is 1."),
        (body(*[("text", None, b"x")] * 9), "", "Too many fields. Maximum number of fields is 8."),
        (body(("text", None, b"x" * (MAX_FIELD_BYTES + 1))), "",
         "Part exceeded maximum size of 1024KB."),
        (b"--b0und\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0und--\r\n", "",
         'The Content-Disposition header field "name" must be provided.'),
        (body(("text", None, b"x")), "multipart/form-data", "Missing boundary in multipart."),
        (b"--b0und\r\nno colon here\r\n\r\n", "", "Invalid multipart data."),
    ],
)  # fmt: skip
def test_errors_with_starlettes_messages(data, content_type, message):
    with pytest.raises(MultipartError) as info:
        ours(data, content_type=content_type)
    assert str(info.value) == message
    with pytest.raises(Exception) as theirs:
        starlettes(data, content_type)
    assert str(theirs.value) == message
