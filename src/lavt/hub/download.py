"""Downloading one file into the cache: resumable, locked, checksummed.

The bytes go to ``<file>.part``; an interrupted transfer is resumed with an
HTTP ``Range`` request for the rest (automatically a few times, and again by the
next call). Only a complete, verified file is renamed into place, so a reader
never sees half of one. A file lock (the ``filelock`` package) makes the ranks
of ``torchrun`` download once: the others wait and then use the file.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lavt.errors import CheckpointError
from lavt.hub import cache

log = logging.getLogger("lavt")

#: opens the source at a byte offset, given the validator (ETag or Last-Modified) of
#: the partial file's first response for ``If-Range``; returns the response (200 or 206)
Opener = Callable[[int, str | None], http.client.HTTPResponse]

TIMEOUT_S = 60.0
_CHUNK = 1 << 16


class Interrupted(Exception):
    """The transfer stopped before the end; the ``.part`` file keeps what arrived."""


def _retries() -> int:
    try:
        return max(0, int(os.environ.get("LAVT_DOWNLOAD_RETRIES", "3")))
    except ValueError:
        return 3


def http_open(
    url: str,
    offset: int,
    validator: str | None = None,
    opener: urllib.request.OpenerDirector | None = None,
):
    """GET ``url`` from byte ``offset`` (a ``Range`` request when positive; with
    ``If-Range: validator`` the server sends the whole file if it has changed)."""
    headers = {"User-Agent": "lavt", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    return (opener or urllib.request.build_opener()).open(request, timeout=TIMEOUT_S)


def _progress(total: int | None, initial: int, label: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )


def _transfer(open_at: Opener, part: Path, label: str) -> None:
    """Append the rest of the file to ``part`` (restart it if the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    meta = cache.part_meta_path(part)
    try:
        validator = json.loads(meta.read_text())["validator"] if offset else None
    except (OSError, ValueError, KeyError, TypeError):
        validator = None
    try:
        response = open_at(offset, validator)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the part file is not a prefix any more
            _discard(part)
            raise Interrupted("the server refused to resume; starting again") from None
        raise
    with response:
        if "text/html" in (response.headers.get("Content-Type") or ""):
            raise CheckpointError(f"{label}: the server sent an HTML page instead of the file")
        length = response.headers.get("Content-Length")
        if response.status == 206:
            found = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if found is None or int(found.group(1)) != offset:
                _discard(part)
                raise Interrupted("the server resumed at the wrong byte; starting again")
            total = int(found.group(2)) if found.group(2) != "*" else None
            mode = "ab"
        else:
            offset, mode = 0, "wb"
            total = int(length) if length else None
            _write_validator(meta, response.headers)
        if offset:
            log.info("%s: resuming at %.1f MB", label, offset / 1e6)
        written = offset
        try:
            with part.open(mode) as f, _progress(total, offset, label) as bar:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as err:
            raise Interrupted(f"connection lost after {written} bytes ({err})") from None
    if total is not None and written != total:
        raise Interrupted(f"connection lost after {written} of {total} bytes")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    cache.part_meta_path(part).unlink(missing_ok=True)


def _write_validator(meta: Path, headers) -> None:
    """Keep the strong ETag (or Last-Modified) of a fresh transfer for ``If-Range``."""
    etag = headers.get("ETag")
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
    if validator:
        meta.write_text(json.dumps({"validator": validator}))
    else:
        meta.unlink(missing_ok=True)


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` means the network or the host cannot be reached at all."""
    if isinstance(err, urllib.error.HTTPError):
        return False
    if isinstance(err, urllib.error.URLError):
        return True
    return isinstance(err, ConnectionError | TimeoutError | socket.gaierror)


def download(
    open_at: Opener,
    dest: Path,
    *,
    source: str,
    expected: str | None,
    label: str,
    expected_from: str = cache.PUBLISHED,
) -> Path:
    """Fetch ``dest`` through ``open_at`` unless it is already complete; returns ``dest``.

    Raises :class:`CheckpointError` for an unreachable source (naming where to
    put the file by hand), a checksum mismatch with ``expected`` (whose origin
    ``expected_from`` words; the download is removed) or a
    transfer that keeps failing (the ``.part`` file is kept for the next try).
    """
    from filelock import FileLock, Timeout

    checks = dict(expected=expected, source=source, label=label, expected_from=expected_from)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache.lock_path(dest)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s: another process is downloading it; waiting", label)
        lock.acquire()
    try:
        if dest.exists():  # another process finished it while we waited
            return cache.check_cached(dest, **checks)
        log.info("downloading %s from %s to %s", label, source, dest)
        part = cache.part_path(dest)
        for attempt in range(_retries() + 1):
            try:
                _transfer(open_at, part, label)
                break
            except Interrupted as err:
                if attempt == _retries():
                    raise CheckpointError(
                        f"{label}: download from {source} interrupted ({err}); "
                        f"run again to resume from {part}"
                    ) from None
                log.warning("%s: %s; retrying", label, err)
        _finish(part, dest, **checks)
    finally:
        lock.release()
    return dest


def _finish(
    part: Path, dest: Path, *, source: str, expected: str | None, expected_from: str, label: str
) -> None:
    """Check the complete ``part`` file, record its checksum and rename it into place."""
    actual = cache.file_sha256(part)
    if expected and actual != expected.lower():
        _discard(part)
        raise CheckpointError(
            f"{label}: the file from {source} has sha256 {actual[:12]}..., not "
            f"{expected[:12]}... ({expected_from}); removed it (a wrong or damaged file)"
        )
    problem = cache.truncation_problem(part)
    if problem is not None:
        _discard(part)
        raise CheckpointError(
            f"{label}: the file from {source} is incomplete ({problem}); removed it"
        )
    cache.write_sidecar(dest, actual, source, size=part.stat().st_size)
    os.replace(part, dest)
    cache.part_meta_path(part).unlink(missing_ok=True)
    log.info("%s: saved %s (sha256 %s)", label, dest, actual)
