"""Request-body limit enforced while the body streams in (pure ASGI middleware).

A declared ``Content-Length`` over the limit is refused before a byte of the
body is read; a chunked body is counted as it arrives and refused as soon as
it passes the limit. Either way the answer is a JSON 413 and at most
``limit`` bytes were ever held; the connection is then closed by the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lavt.serve.errors import error_body


class BodyTooLarge(Exception):
    """Raised inside the app's ``receive`` when the body passes the limit."""


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, on_refuse: Callable[[], None] = lambda: None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes / 2**20:g} MB (max_upload_mb)"

    async def _refuse(self, send: Send) -> None:
        self.on_refuse()
        body = json.dumps(error_body(413, self._message())).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        refused = True
                        await self._refuse(send)
                    raise BodyTooLarge(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 went out already; drop whatever the app says next
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                raise
