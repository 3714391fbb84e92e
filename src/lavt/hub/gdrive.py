"""Google Drive downloads, including the confirmation step for large files.

Drive answers a download request for a file it cannot virus-scan (anything
over ~100 MB, so every LAVT checkpoint) with an HTML page instead of the file.
Three forms of that page exist in the wild, all handled here:

- a ``download_warning*`` cookie whose value is the confirmation token
  (repeat the request with ``confirm=<token>``);
- a link whose query string carries ``confirm=<token>``;
- an HTML form (``drive.usercontent.google.com/download``) whose hidden inputs
  (``id``, ``export``, ``confirm``, ``uuid``) are sent back as a GET request.

``LAVT_GDRIVE_URL`` replaces ``https://drive.google.com`` (a mirror, or a local
server in the tests).
"""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import urllib.parse
import urllib.request
from html.parser import HTMLParser

from lavt.errors import CheckpointError
from lavt.hub.download import http_open

_MAX_PAGE = 1 << 20
_MAX_STEPS = 4


def gdrive_base() -> str:
    return os.environ.get("LAVT_GDRIVE_URL", "https://drive.google.com").rstrip("/")


def gdrive_url(file_id: str) -> str:
    return f"{gdrive_base()}/uc?" + urllib.parse.urlencode({"export": "download", "id": file_id})


class _Forms(HTMLParser):
    """Collects each form's action and its hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            if values.get("type", "text").lower() == "hidden":
                self.forms[-1][1][values["name"]] = values.get("value", "")
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False if tag == "title" else self._in_title


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def confirmation_url(page: str, url: str, jar: http.cookiejar.CookieJar) -> str | None:
    """The request that gets past Drive's warning page, or None if the page has none."""
    parser = _Forms()
    parser.feed(page)
    for action, fields in parser.forms:
        if "confirm" in fields or "id" in fields:
            target = urllib.parse.urljoin(url, html.unescape(action) or url)
            return target.split("?")[0] + "?" + urllib.parse.urlencode(fields)
    for cookie in jar:
        if cookie.name.startswith("download_warning"):
            return _with_query(url, confirm=cookie.value)
    found = re.search(r"confirm=([0-9A-Za-z_-]+)", html.unescape(page))
    if found:
        return _with_query(url, confirm=found.group(1))
    return None


def _page_title(page: str) -> str:
    parser = _Forms()
    parser.feed(page)
    return parser.title or "no title"


class DriveOpener:
    """An :data:`~lavt.hub.download.Opener` for one Drive file id (cookies kept per file)."""

    def __init__(self, file_id: str) -> None:
        self.file_id = file_id
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def __call__(self, offset: int, validator: str | None = None):
        url = gdrive_url(self.file_id)
        for _ in range(_MAX_STEPS):
            response = http_open(url, offset, validator, self.opener)
            if "text/html" not in (response.headers.get("Content-Type") or ""):
                return response
            with response:
                page = response.read(_MAX_PAGE).decode("utf-8", "replace")
                next_url = confirmation_url(page, response.url, self.jar)
            if next_url is None:
                raise CheckpointError(
                    f"Google Drive file {self.file_id}: Drive sent a page without the file "
                    f"({_page_title(page)!r}: quota exceeded, or the link is not public)"
                )
            url = next_url
        raise CheckpointError(
            f"Google Drive file {self.file_id}: no file after {_MAX_STEPS} confirmation pages"
        )
