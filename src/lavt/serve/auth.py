"""Access control of the HTTP API: ``lavt serve --api-key KEY`` (or ``LAVT_API_KEY``).

With a key, every ``/v1/*`` route (and ``/metrics`` unless ``metrics_open``)
needs ``Authorization: Bearer KEY`` (RFC 6750); the key is compared in
constant time (:func:`hmac.compare_digest`). Anything else is answered 401
with the API's error object and a ``WWW-Authenticate`` challenge, before a
byte of the body is read. ``/healthz``, the page and its static files stay open
(the page asks for the key). A pure ASGI middleware, like the body limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
from ipaddress import ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

from lavt.serve.errors import error_body

log = logging.getLogger("lavt")

REALM = 'Bearer realm="lavt"'


def is_protected(path: str, *, metrics_open: bool) -> bool:
    """Whether ``path`` needs the key when the server has one."""
    return path.startswith("/v1/") or (path == "/metrics" and not metrics_open)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str, metrics_open: bool = False) -> None:
        self.app = app
        self._key = api_key.encode("ascii")
        self.metrics_open = metrics_open

    def authorized(self, scope: Scope) -> tuple[bool, str]:
        token = bearer_token(scope.get("headers", []))
        if token is None:
            return False, "this server needs an API key: send 'Authorization: Bearer <key>'"
        if not hmac.compare_digest(token, self._key):
            return False, "wrong API key"
        return True, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(
            scope["path"], metrics_open=self.metrics_open
        ):
            await self.app(scope, receive, send)
            return
        ok, message = self.authorized(scope)
        if ok:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body(401, message)).encode()
        challenge = (
            REALM if message.startswith("this server") else f'{REALM}, error="invalid_token"'
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback one (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def warn_if_exposed(host: str, api_key: str | None) -> bool:
    """Log a warning when binding a non-loopback address without a key; True when it did."""
    if api_key is not None or is_loopback(host):
        return False
    log.warning(
        "listening on %s without an API key: anyone who can reach it can use the model; "
        "set --api-key or LAVT_API_KEY, and put a TLS reverse proxy in front (docs/serve.md)",
        host,
    )
    return True
