"""A ``multipart/form-data`` body read in one pass into memory (``POST /v1/segment``).

The same parser as Starlette's ``request.form()`` (python-multipart, fed chunk by
chunk as the body streams in, so :class:`~lavt.serve.limits.BodyLimitMiddleware`
still refuses an oversized body while it arrives) and the same rules and messages
(at most ``max_files`` file parts and ``max_fields`` other parts, 1 MB per
non-file part, the body's charset with latin-1 as the fallback), without what a
general form reader needs and this endpoint does not: a spooled temporary file per
upload, written and read back through ``await``. A request holds its upload's bytes
once, as ``request.form()`` followed by ``upload.read()`` did (the body limit bounds them).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

#: the largest non-file part (Starlette's ``max_part_size``)
MAX_FIELD_BYTES = 1024 * 1024


class MultipartError(Exception):
    """A malformed body or one over a part limit (the message says which)."""


@dataclass
class Upload:
    """A file part: its ``filename`` and its bytes."""

    filename: str
    data: bytes


class FormParts:
    """The parts of a form in their order: ``name -> str`` or ``name -> Upload``."""

    def __init__(self, items: list[tuple[str, str | Upload]]) -> None:
        self.items = items

    def get(self, name: str) -> str | Upload | None:
        """The last part called ``name`` (as Starlette's ``FormData.get``), or None."""
        found = [value for key, value in self.items if key == name]
        return found[-1] if found else None

    def getlist(self, name: str) -> list[str | Upload]:
        return [value for key, value in self.items if key == name]


def _decode(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


class _Collector:
    """python-multipart's callbacks, collecting the parts of one body."""

    def __init__(self, charset: str, max_files: int, max_fields: int) -> None:
        self.charset = charset
        self.max_files = max_files
        self.max_fields = max_fields
        self.files = self.fields = 0
        self.items: list[tuple[str, str | Upload]] = []
        self._header = [b"", b""]  # the header being read: name, value
        self._disposition = b""
        self._name = ""
        self._filename: str | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_part_end")}  # fmt: skip

    def on_part_begin(self) -> None:
        self._disposition, self._chunks, self._size = b"", [], 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def on_header_end(self) -> None:
        if self._header[0].lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise MultipartError('The Content-Disposition header field "name" must be provided.')
        self._name = _decode(options[b"name"], self.charset)
        if b"filename" in options:
            self.files += 1
            if self.files > self.max_files:
                raise MultipartError(
                    f"Too many files. Maximum number of files is {self.max_files}."
                )
            self._filename = _decode(options[b"filename"], self.charset)
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise MultipartError(
                    f"Too many fields. Maximum number of fields is {self.max_fields}."
                )
            self._filename = None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._filename is None and self._size > MAX_FIELD_BYTES:
            raise MultipartError(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")
        self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        if self._filename is None:
            self.items.append((self._name, _decode(data, self.charset)))
        else:
            self.items.append((self._name, Upload(self._filename, data)))


async def read_form(request: Request, *, max_files: int, max_fields: int) -> FormParts:
    """The request's multipart body -> its parts; :class:`MultipartError` when malformed.

    The body limit's error (:class:`~lavt.serve.limits.BodyTooLarge`) propagates.
    """
    _, params = parse_options_header(request.headers.get("content-type", ""))
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    boundary = params.get(b"boundary")
    if not boundary:
        raise MultipartError("Missing boundary in multipart.")
    collector = _Collector(charset, max_files, max_fields)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise MultipartError("Invalid multipart data.") from None
    except ClientDisconnect:  # nobody reads the answer; no traceback in the log either
        raise MultipartError("the client disconnected before the body ended") from None
    return FormParts(collector.items)
