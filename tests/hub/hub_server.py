"""A real HTTP server on 127.0.0.1 that plays every kind of weights host (fixtures).

Routes (``<name>`` is a key of ``server.files``):

- ``/files/<name>``: the file, with an ETag, honouring ``Range`` (206 + Content-Range)
  unless ``If-Range`` names another version;
- ``/cut/<name>``: the first request stops half-way (connection closed), later ones
  behave like ``/files``;
- ``/gate/<name>``: sends half, then waits for ``server.gate`` before the rest;
- ``/html/<name>``: an HTML page (200) instead of the file;
- ``/uc?export=download&id=<name>``: Google Drive. Names starting with ``big``
  get a warning page first: a form (``/download`` with hidden id/export/confirm/uuid),
  or for ``bigcookie`` a ``download_warning`` cookie and a ``confirm=`` link; the
  first download of a ``bigcut`` file stops half-way.

``server.hits`` lists (path, Range header) of every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "t0k3n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        with self.server.lock:
            self.server.hits.append((parts.path, self.headers.get("Range")))
        route, _, name = parts.path.lstrip("/").partition("/")
        if route == "uc":
            return self._drive(query)
        if route == "download":
            if query.get("confirm") != TOKEN or query.get("uuid") != "u-1":
                return self._send_page("<html><title>Bad request</title></html>")
            name = query["id"]
            if name.startswith("bigcut") and not self.server.cut_done.get(name):
                self.server.cut_done[name] = True
                return self._send_file(name, stop_at=len(self.server.files[name]) // 2)
            return self._send_file(name)
        if route == "html":
            return self._send_page("<html><title>Quota exceeded</title><body>no</body></html>")
        if name not in self.server.files:
            self.send_error(404)
            return None
        if route == "cut":
            first = not self.server.cut_done.get(name)
            self.server.cut_done[name] = True
            if first:
                return self._send_file(name, stop_at=len(self.server.files[name]) // 2)
        if route == "gate":
            return self._send_file(name, gate=True)
        return self._send_file(name)

    def _drive(self, query: dict[str, str]) -> None:
        name = query.get("id", "")
        if not name.startswith("big") or query.get("confirm") == TOKEN:
            return self._send_file(name)
        if name.startswith("bigcookie"):
            link = f"/uc?export=download&amp;confirm={TOKEN}&amp;id={name}"
            page = f'<html><title>Warning</title><a href="{link}">Download anyway</a></html>'
            return self._send_page(page, cookie=f"download_warning_1_{name}={TOKEN}; Path=/")
        form = (
            "<html><title>Google Drive - Virus scan warning</title>"
            '<form id="download-form" action="/download" method="get">'
            '<input type="submit" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="{name}">'
            '<input type="hidden" name="export" value="download">'
            f'<input type="hidden" name="confirm" value="{TOKEN}">'
            '<input type="hidden" name="uuid" value="u-1"></form></html>'
        )
        return self._send_page(form)

    def _send_page(self, page: str, cookie: str | None = None) -> None:
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, name: str, stop_at: int | None = None, gate: bool = False) -> None:
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        spec = self.headers.get("Range")
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if self.headers.get("If-Range") not in (None, etag):
            spec = None  # the file changed since the partial download: send all of it
        if spec and spec.startswith("bytes=") and spec.endswith("-"):
            start = int(spec[6:-1])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if stop_at is not None:
            self.wfile.write(body[:stop_at])
            self.wfile.flush()
            self.close_connection = True
            return
        if gate:
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            self.server.gate.wait(60)
            body = body[half:]
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.hits: list[tuple[str, str | None]] = []
        self.cut_done: dict[str, bool] = {}
        self.gate = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hits_for(self, path: str) -> list[str | None]:
        with self.lock:
            return [rng for p, rng in self.hits if p == path]


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.gate.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def lavt_home(tmp_path, monkeypatch):
    """An empty ``$LAVT_HOME``, online, with no extra weights table."""
    home = tmp_path / "lavt_home"
    monkeypatch.setenv("LAVT_HOME", str(home))
    for var in ("LAVT_OFFLINE", "HF_HUB_OFFLINE", "LAVT_WEIGHTS_TABLE", "LAVT_GDRIVE_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def table(tmp_path, monkeypatch):
    """``table(entries)`` writes a ``LAVT_WEIGHTS_TABLE`` file and points the env var at it."""

    def write(entries: list[dict]) -> None:
        path = tmp_path / "table.json"
        path.write_text(json.dumps(entries))
        monkeypatch.setenv("LAVT_WEIGHTS_TABLE", str(path))

    return write
