"""Settings of ``lavt serve`` (one frozen dataclass; the CLI flags map onto it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lavt.errors import InputError

#: what an API key may be: printable ASCII without spaces (an HTTP header's bytes), >= 16
API_KEY = re.compile(r"[\x21-\x7e]{16,}")


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching of the HTTP server.

    ``max_batch`` counts image-expression pairs per forward; ``max_queue``
    counts requests waiting for the model; ``request_timeout_s`` is the
    per-request deadline (body upload included) after which the answer is 504.
    ``api_key``: when set, every ``/v1/*`` route (and ``/metrics`` unless
    ``metrics_open``) needs ``Authorization: Bearer <api_key>``; never shown in a repr.
    ``model_process``: the forward runs in a child process
    (:mod:`lavt.serve.model_process`); ``lavt serve`` turns it on for a PyTorch model on
    the CPU, :func:`~lavt.serve.app.create_app` alone keeps it in a thread.
    """

    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 256
    max_upload_mb: float = 10.0
    max_pixels: int = 4096 * 4096
    max_expressions: int = 8
    max_text_chars: int = 200
    request_timeout_s: float = 30.0
    worker_threads: int = 4  # threads decoding images and encoding masks
    model_process: bool = False  # the forward in a child process (lavt.serve.model_process)
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    api_key: str | None = field(default=None, repr=False)
    metrics_open: bool = False  # with an api_key: /metrics without one too

    def __post_init__(self) -> None:
        ints = ("max_batch", "max_queue", "max_pixels", "max_expressions", "max_text_chars")
        for name in (*ints, "worker_threads"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} {getattr(self, name)}: must be at least 1", param=name)
        for name in ("max_upload_mb", "request_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{name} {getattr(self, name)}: must be positive", param=name)
        if not float(self.max_wait_ms) >= 0:
            raise InputError(f"max_wait_ms {self.max_wait_ms}: must be >= 0", param="max_wait_ms")
        if self.api_key is not None and not API_KEY.fullmatch(self.api_key):
            # the message never repeats the key
            raise InputError(
                f"api_key: {len(self.api_key)} characters; a key is printable ASCII "
                "without spaces, at least 16 characters",
                param="api_key",
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
