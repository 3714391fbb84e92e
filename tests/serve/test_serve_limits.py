"""Body limit while streaming (raw sockets), queue full (503), deadline (504), CORS."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import socket
import time
import urllib.parse

import httpx
import pytest
from PIL import Image

pytest_plugins = ["serve_helpers"]

pytestmark = pytest.mark.slow

LIMIT = 1024 * 1024  # the shared server's --max-upload-mb 1


def raw_exchange(url: str, head: str, chunks) -> tuple[int, dict, int]:
    """Send ``head``, then ``chunks`` until the server answers -> (status, JSON, bytes sent)."""
    parsed = urllib.parse.urlparse(url)
    sent = 0
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.settimeout(0.05)
        reply = b""
        for chunk in chunks:
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                reply += sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                pass
            if reply:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    head_bytes, _, body = reply.partition(b"\r\n\r\n")
    status = int(head_bytes.split()[1])
    return status, json.loads(body), sent


def test_declared_length_over_limit_refused_before_the_body(server):
    declared = 50 * LIMIT
    head = (
        "POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    status, body, sent = raw_exchange(server, head, [b"x" * 65536] * 800)
    assert status == 413
    assert "max_upload_mb" in body["error"]["message"]
    assert sent < declared // 4  # answered long before the body could have been read
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_chunked_body_over_limit_refused_while_streaming(server):
    head = (
        "POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"A" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    status, body, sent = raw_exchange(server, head, [chunk] * 800)  # 50 MB if all were sent
    assert status == 413
    assert body["error"]["status"] == 413
    assert sent < 20 * LIMIT
    assert httpx.get(f"{server}/healthz").status_code == 200
    assert 'lavt_requests_total{status="413"}' in httpx.get(f"{server}/metrics").text


def test_body_just_under_the_limit_is_read(server):
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    padding = "x" * (LIMIT - 2000)
    reply = httpx.post(
        f"{server}/v1/segment",
        json={"image": base64.b64encode(image.getvalue()).decode(), "texts": ["a"], "pad": padding},
    )
    assert reply.status_code == 200, reply.text


def small_request(url: str) -> httpx.Response:
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    return httpx.post(
        f"{url}/v1/segment", files={"image": ("a.png", image.getvalue())}, data={"text": "a"}
    )


def test_queue_full_is_503_with_retry_after_and_deadline_is_504(busy_server):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(small_request, busy_server)
        time.sleep(0.25)  # the first request is queued, waiting for its batch
        second = small_request(busy_server)
        assert second.status_code == 503, second.text
        assert second.headers["retry-after"] == "1"
        assert "busy" in second.json()["error"]["message"]
        timed_out = first.result()
    assert timed_out.status_code == 504, timed_out.text
    assert "request_timeout_s" in timed_out.json()["error"]["message"]
    # the timed-out request left the queue: the next one is admitted (and times out again)
    assert small_request(busy_server).status_code == 504
    assert httpx.get(f"{busy_server}/healthz").status_code == 200
    metrics = httpx.get(f"{busy_server}/metrics").text
    assert 'lavt_requests_total{status="503"} 1.0' in metrics
    assert 'lavt_requests_total{status="504"} 2.0' in metrics


def test_slow_upload_gets_504_at_the_deadline(busy_server):
    """A client that never finishes its body is answered at the deadline, not waited for."""
    parsed = urllib.parse.urlparse(busy_server)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"image": "'
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 504"), reply
    assert httpx.get(f"{busy_server}/healthz").status_code == 200


def test_cors_only_for_the_given_origin(busy_server, server):
    preflight = {
        "Origin": "http://allowed.test",
        "Access-Control-Request-Method": "POST",
    }
    allowed = httpx.options(f"{busy_server}/v1/segment", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "http://allowed.test"
    other = httpx.options(
        f"{busy_server}/v1/segment", headers={**preflight, "Origin": "http://evil.test"}
    )
    assert other.headers.get("access-control-allow-origin") is None
    plain = httpx.options(f"{server}/v1/segment", headers=preflight)  # no --cors-origin
    assert plain.headers.get("access-control-allow-origin") is None
