"""From what a person typed (a path, a registered name, a URL, ``hf://``) to a local file."""

from __future__ import annotations

import logging
import os
import re
import urllib.error
from pathlib import Path

from lavt.assets import BUNDLED_MODELS, asset_path
from lavt.errors import CheckpointError
from lavt.hub import cache
from lavt.hub.download import download, http_open, unreachable
from lavt.hub.registry import WeightsEntry, close_names, find_entry

#: the kind of weights each parameter takes (others, like ``lavt weights fetch``, take any)
_EXPECTED_KIND = {"checkpoint": "lavt", "init_weights": "lavt", "pretrained_swin_weights": "swin"}
_KIND_NAMES = {
    "lavt": "a LAVT checkpoint",
    "swin": "ImageNet Swin weights (for pretrained_swin_weights)",
    "text": "a text encoder (for text_encoder)",
}
log = logging.getLogger("lavt")
_URL = re.compile(r"^(https?|hf):/+", re.IGNORECASE)


def _normalise(text: str) -> str:
    """Repair a URL that went through ``pathlib.Path`` (``https:/host`` -> ``https://host``)."""
    found = _URL.match(text)
    if found is None:
        return text
    return f"{found.group(1).lower()}://" + text[found.end() :]


def entry_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives in the cache (downloaded or placed by hand)."""
    return cache.weights_dir() / entry.filename


def _opener(entry_url: str | None, gdrive_id: str | None):
    if gdrive_id:
        from lavt.hub.gdrive import DriveOpener

        return DriveOpener(gdrive_id)
    return lambda offset, validator: http_open(entry_url, offset, validator)


def _fetch(
    dest: Path,
    *,
    url: str | None,
    gdrive_id: str | None,
    source: str,
    expected: str | None,
    label: str,
    expected_from: str = cache.PUBLISHED,
) -> Path:
    """The verified cache file ``dest``, downloaded unless present (or offline); a
    downloaded copy that fails its checksum is removed and downloaded again, once."""
    checks = {"expected": expected, "source": source, "label": label}
    if dest.exists():
        try:
            return cache.check_cached(dest, **checks, expected_from=expected_from)
        except cache.CorruptDownload as err:
            log.warning("%s; removed it, downloading it again", err.finding)
    by_hand = f"download {source} and put it at {dest}"
    var = cache.offline_variable()
    if var is not None:
        raise CheckpointError(
            f"{label}: {dest.name} is not in the cache and {var} is set; {by_hand}"
        )
    try:
        return download(_opener(url, gdrive_id), dest, **checks, expected_from=expected_from)
    except urllib.error.HTTPError as err:
        raise CheckpointError(f"{label}: {source} answered HTTP {err.code}; {by_hand}") from None
    except OSError as err:  # URLError included
        if unreachable(err):
            reason = getattr(err, "reason", err)
            raise CheckpointError(f"{label}: cannot reach {source} ({reason}); {by_hand}") from None
        raise CheckpointError(
            f"{label}: cannot write {dest} ({err.strerror or err}); set LAVT_HOME to a "
            "writable folder"
        ) from None


def fetch_entry(entry: WeightsEntry, *, label: str | None = None) -> Path:
    """The local file of a registered entry, downloaded once; its ``.safetensors``
    copy (``lavt weights fetch --safetensors``) when one was made."""
    label = label or entry.name
    if entry.kind == "text":
        raise CheckpointError(f"{label}: {_KIND_NAMES['text']}, not a weights file")
    dest = entry_path(entry)
    copy = cache.safetensors_copy_path(dest)
    if copy != dest and copy.exists():
        return cache.check_cached(copy, expected=None, source=f"converted from {dest}", label=label)
    if entry.manual:
        return _placed_by_hand(entry, dest, label)
    return _fetch(
        dest,
        url=entry.url,
        gdrive_id=entry.gdrive_id,
        source=entry.source,
        expected=entry.sha256,
        label=label,
        expected_from=entry.checksum_origin,
    )


def _placed_by_hand(entry: WeightsEntry, dest: Path, label: str) -> Path:
    """A file with no direct download: the copy placed at ``dest`` (checksummed), else one
    line saying where to get it and where to put it."""
    if dest.exists():
        try:
            return cache.check_cached(
                dest,
                expected=entry.sha256,
                source=entry.source,
                label=label,
                expected_from=entry.checksum_origin,
            )
        except cache.CorruptDownload as err:  # changed since its sha256 was recorded
            raise CheckpointError(f"{err.finding}; removed it, put a good copy there") from None
    if entry.page:
        raise CheckpointError(
            f"{label}: no direct download ({entry.variant}); download it by hand from "
            f"{entry.page} and put it at {dest}"
        )
    raise CheckpointError(
        f"{label}: no download link published for it ({entry.variant}); a copy put at "
        f"{dest} is used"
    )


def fetch_url(url: str, *, label: str | None = None) -> Path:
    """The local file of an ``http(s)://`` URL, downloaded once into the cache."""
    dest = cache.url_cache_path(url)
    copy = cache.safetensors_copy_path(dest)
    if copy != dest and copy.exists():
        return cache.check_cached(
            copy, expected=None, source=f"converted from {dest}", label=label or url
        )
    return _fetch(dest, url=url, gdrive_id=None, source=url, expected=None, label=label or url)


def cache_path(source: str) -> Path:
    """Where a registered name or URL is (or will be) cached; the path itself otherwise."""
    text = _normalise(os.fspath(source))
    if text.lower().startswith(("http://", "https://")):
        return cache.url_cache_path(text)
    entry = find_entry(text)
    if entry is None or entry.kind == "text":
        raise CheckpointError(f"{text}: not a registered weights name (see: lavt weights list)")
    return entry_path(entry)


def resolve_weights(source: str | os.PathLike, *, param: str = "checkpoint") -> Path:
    """A local path for ``source``: a path (returned unchanged, even when missing, for the
    caller's own error), a registered name (``lavt-refcoco``, ``swin-base-window12-384-22k``;
    see ``lavt weights list``), an ``http(s)://`` URL, ``hf://owner/repo/file[@revision]``
    (a file) or ``hf://owner/repo[@revision]`` (the local folder of a pretrained repository).

    Names and URLs are downloaded once into ``$LAVT_HOME`` and checksummed at every use.
    Errors name ``param``.
    """
    text = _normalise(os.fspath(source))
    try:
        return _resolve(source, text, param)
    except CheckpointError as err:  # lets the CLI show the parameter as its flag
        if err.param is None and str(err).startswith(param):
            err.param = param
        raise


def _resolve(source: str | os.PathLike, text: str, param: str) -> Path:
    label = f"{param} {text}"
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        return fetch_url(text, label=label)
    if lowered.startswith("hf://"):
        from lavt.hub.hf import hf_download, hf_snapshot, parse_hf_repo

        if parse_hf_repo(text) is not None:  # hf://owner/repo[@rev]: a pretrained folder
            return hf_snapshot(text, label=label)
        return hf_download(text, label=label)
    path = Path(source)
    if path.exists():
        return path
    if text in BUNDLED_MODELS:  # shipped in the package: never downloaded
        return asset_path(BUNDLED_MODELS[text])
    entry = find_entry(text)
    if entry is not None:
        wanted = _EXPECTED_KIND.get(param)
        if wanted and entry.kind != wanted:
            raise CheckpointError(f"{label}: {_KIND_NAMES[entry.kind]}, not {_KIND_NAMES[wanted]}")
        if param == "init_weights" and entry.task == "video":
            raise CheckpointError(f"{label}: a video checkpoint; lavt trains image models only")
        return fetch_entry(entry, label=label)
    if os.sep not in text and "/" not in text and close_names(text):
        raise unknown_source(label, text)
    return path


def unknown_source(label: str, text: str, *, param: str | None = None) -> CheckpointError:
    """The error for ``text`` that is no file and no registered name, with a "did you
    mean" for names that look like a misspelling of a registered one."""
    guesses = close_names(text)
    hint = f"; did you mean {' or '.join(guesses)}?" if guesses else ""
    return CheckpointError(
        f"{label}: no such file, nor a registered weights name{hint} (lavt weights list)",
        param=param,
    )
