"""JSON errors of the HTTP API: ``{"error": {"status", "type", "message"}}``."""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import JSONResponse


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_body(status: int, message: str) -> dict:
    """The JSON body of an error answer (``type``: the status phrase in snake case)."""
    kind = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return {"error": {"status": status, "type": kind, "message": message}}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)
