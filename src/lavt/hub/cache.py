"""The weights cache: where files live, their recorded checksums, integrity checks.

Layout under ``$LAVT_HOME`` (default ``~/.cache/lavt``)::

    weights/<file>                 a complete file (renamed into place when complete)
    weights/<file>.json            its sidecar: sha256, size, source, time of download
    weights/<file>.part            an interrupted download, resumed by the next attempt
    weights/<file>.part.json       the server's ETag of that download (If-Range)
    weights/<file>.lock            the lock that lets one process download at a time
    weights/url/<hash>/<file>      files fetched from an http(s) URL
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

from lavt.errors import CheckpointError

log = logging.getLogger("lavt")

_CHUNK = 1 << 20
#: (path, size, mtime_ns) -> sha256 of files already hashed by this process
_hashed: dict[tuple[str, int, int], str] = {}


def lavt_home() -> Path:
    """``$LAVT_HOME``, default ``~/.cache/lavt``."""
    return Path(os.environ.get("LAVT_HOME") or "~/.cache/lavt").expanduser()


def weights_dir() -> Path:
    return lavt_home() / "weights"


def url_cache_path(url: str) -> Path:
    """The cache file of a download URL: its last path component under a hash of the URL."""
    from urllib.parse import unquote, urlparse

    base = unquote(urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]) or "download"
    base = "".join(c if c.isalnum() or c in "._+-" else "_" for c in base).lstrip(".")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return weights_dir() / "url" / digest / (base or "download")


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def part_meta_path(part: Path) -> Path:
    """The ETag / Last-Modified of a partial download, sent as ``If-Range`` to resume."""
    return part.with_name(part.name + ".json")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def safetensors_copy_path(path: Path) -> Path:
    """Where ``--safetensors`` keeps the converted copy of a cached checkpoint."""
    return path.with_suffix(".safetensors")


def offline_variable() -> str | None:
    """``LAVT_OFFLINE`` or ``HF_HUB_OFFLINE`` when set to a true value (downloads off)."""
    for var in ("LAVT_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def is_offline() -> bool:
    return offline_variable() is not None


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered for as long as its size and mtime do not change."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _hashed[key] = digest.hexdigest()
    return _hashed[key]


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("sha256"), str) else None


def write_sidecar(path: Path, sha256: str, source: str, size: int | None = None) -> None:
    """Record ``path``'s checksum and source beside it (``<file>.json``)."""
    from lavt.runtime import atomic_write_text

    record = {
        "sha256": sha256,
        "size": size if size is not None else path.stat().st_size,
        "source": source,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(sidecar_path(path), json.dumps(record, indent=1) + "\n")


def truncation_problem(path: Path) -> str | None:
    """Why ``path`` is visibly incomplete (a zip without its directory, a short
    safetensors file, an HTML page), or None when its structure looks whole."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format
        if not zipfile.is_zipfile(path):
            return "the zip archive is cut short (no central directory)"
        return None
    if path.suffix == ".safetensors" and len(head) >= 8:
        (header_len,) = struct.unpack("<Q", head[:8])
        try:
            with path.open("rb") as f:
                f.seek(8)
                header = json.loads(f.read(header_len))
            end = max(
                (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                default=0,
            )
        except (ValueError, KeyError, TypeError, IndexError):
            return "the safetensors header is unreadable"
        if size < 8 + header_len + end:
            return f"the safetensors data is cut short ({size} of {8 + header_len + end} bytes)"
        return None
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page, not a weights file"
    return None


#: how checksum messages name a sha256 from the built-in table
PUBLISHED = "the published sha256"


class CorruptDownload(CheckpointError):
    """A downloaded file failed its checksum and was removed: fetching it again may mend it.

    ``finding`` is the message without what happens next.
    """

    def __init__(self, finding: str) -> None:
        super().__init__(f"{finding}; removed it, the next use downloads it again")
        self.finding = finding


def check_cached(
    path: Path,
    *,
    expected: str | None,
    source: str,
    label: str,
    expected_from: str = PUBLISHED,
) -> Path:
    """Verify a cached or hand-placed file before it is used; returns ``path``.

    Against the table's checksum when known (``expected_from`` says where it
    comes from), else against the one recorded at its first download. A file
    without a record (placed by hand) gets one now. A downloaded file that fails
    is removed (:class:`CorruptDownload`); a hand-placed one is left alone.
    """
    record = read_sidecar(path)
    actual = file_sha256(path)
    wanted = expected or (record["sha256"] if record else None)
    if wanted is not None and actual != wanted.lower():
        what = expected_from if expected else "the one recorded at its download"
        finding = (
            f"{label}: {path} is corrupt: sha256 {actual[:12]}... differs from "
            f"{wanted[:12]}..., {what}"
        )
        if record is not None:
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)
            raise CorruptDownload(finding)
        raise CheckpointError(f"{finding}; replace it")
    problem = truncation_problem(path)
    if problem is not None:
        raise CheckpointError(f"{label}: {path} is incomplete ({problem}); replace it")
    if record is None or record.get("sha256") != actual:
        try:
            write_sidecar(path, actual, source)
            log.info("recorded sha256 %s of %s", actual, path)
        except OSError as err:  # a read-only cache still serves its files
            log.warning("cannot record the sha256 of %s (%s)", path, err.strerror or err)
    return path


def cached_files() -> list[Path]:
    """Every complete file in the cache (not sidecars, partial downloads or locks)."""
    root = weights_dir()
    if not root.is_dir():
        return []
    skip = (".json", ".part", ".lock")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(skip))
