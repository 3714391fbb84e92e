"""The table of released weights, by a name a person can type.

Figures are the overall IoU (%) published in the LAVT README (Yang et al.,
CVPR 2022, and its repository); mean IoU is not in this table. Checksums are
recorded at the first download (the upstream releases publish none). The video
checkpoints of LAVT-RS (:mod:`lavt.hub.video_weights`) carry that README's J&F /
oIoU figures and are downloaded by hand (``page``: a folder, no direct link).

Extra entries (a mirror, a private model, a test server) come from a JSON file
named by ``LAVT_WEIGHTS_TABLE``: a list of objects with the fields of
:class:`WeightsEntry` (``FIELD_CHECKS`` says what each must be; the file is
checked when read); an entry of the same name replaces the built-in one.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lavt.errors import InputError
from lavt.hub.cache import PUBLISHED
from lavt.hub.video_weights import video_rows

SWIN_RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
LAVT_HOMEPAGE = "https://github.com/yz93/LAVT-RIS"


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable file (or, for ``kind="text"``, a Hugging Face model), or with
    only ``page`` (or no source at all) a file downloaded by hand and put in the cache."""

    name: str
    kind: str  # "lavt" (a LAVT checkpoint), "swin" (ImageNet backbone), "text" (BERT)
    variant: str
    data: str  # training data
    filename: str  # name in the cache
    url: str | None = None
    gdrive_id: str | None = None
    hf_repo: str | None = None
    sha256: str | None = None
    #: image: split -> overall IoU (%); video: metric ("J&F", "oIoU", ...) -> value
    results: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    task: str = "image"  # "image" or "video": what the checkpoint segments
    page: str | None = None  # a page to download the file from by hand (no direct link)
    #: the LAVT_WEIGHTS_TABLE file the entry comes from (None: built in); not a table field
    table: str | None = field(default=None, compare=False)

    @property
    def checksum_origin(self) -> str:
        """Where ``sha256`` comes from, as the checksum messages word it."""
        if self.table:
            return f"the sha256 given in LAVT_WEIGHTS_TABLE {self.table}"
        return PUBLISHED

    @property
    def manual(self) -> bool:
        """No direct download: the file is fetched by hand (from ``page``, if any)."""
        return not (self.url or self.gdrive_id or self.hf_repo)

    @property
    def source(self) -> str:
        """Where the file comes from, as shown to people."""
        if self.gdrive_id:
            return f"https://drive.google.com/file/d/{self.gdrive_id}/view"
        if self.url:
            return self.url
        if self.hf_repo:
            return f"https://huggingface.co/{self.hf_repo}"
        return self.page or "no download link published"

    @property
    def publisher(self) -> str:
        if self.gdrive_id:
            return "Google Drive (LAVT README)"
        if self.hf_repo:
            return "Hugging Face hub"
        if self.url:
            return self.url.split("/")[2]
        return urlsplit(self.page).netloc + " (by hand)" if self.page else "?"


_DATASETS = {
    "refcoco": ("RefCOCO (UNC)", ("val", "testA", "testB")),
    "refcoco+": ("RefCOCO+ (UNC)", ("val", "testA", "testB")),
    "gref-umd": ("G-Ref (UMD split)", ("val", "test")),
    "gref-google": ("G-Ref (Google split)", ("val",)),
}

# (variant, dataset, Google Drive id, overall IoU per split), from the LAVT README
_RELEASED = (
    ("lavt", "refcoco", "13D-OeEOijV8KTC3BkFP-gOJymc6DLwVT", (72.73, 75.82, 68.79)),
    ("lavt", "refcoco+", "1B8Q44ZWsc8Pva2xD_M-KFh7-LgzeH2-2", (62.14, 68.38, 55.10)),
    ("lavt", "gref-umd", "1BjUnPVpALurkGl7RXXvQiAHhA-gQYKvK", (61.24, 62.09)),
    ("lavt", "gref-google", "1weiw5UjbPfo3tCBPfB8tu6xFXCUG16yS", (60.50,)),
    ("lavt_one", "refcoco", "1xFMEXr6AGU97Ypj1yr8oo00uObbeIQvJ", (73.50, 75.97, 69.33)),
    ("lavt_one", "refcoco+", "1HS8ZnGaiPJr-OmoUn4-4LVnVtD_zHY6w", (63.79, 69.79, 56.49)),
    ("lavt_one", "gref-umd", "14g8NzgZn6HzC6tP_bsQuWmh5LnOcovsE", (64.02, 64.49)),
    ("lavt_one", "gref-google", "1IJeahFVLgKxu_BVmWacZs3oUzgTCeWcz", (61.31,)),
)

_VARIANT_NAMES = {
    "lavt": "LAVT, cross-entropy (original implementation)",
    "lavt_one": "LAVT, Dice loss (new implementation)",
}

# (name, upstream file, variant, training data) of the Swin release (Liu et al., ICCV 2021).
# Names spell "window12": the trainer picks the window from the Swin weights' name.
_SWIN = (
    ("swin-tiny-window7-224", "swin_tiny_patch4_window7_224", "Swin-T, window 7, 224 px"),
    ("swin-small-window7-224", "swin_small_patch4_window7_224", "Swin-S, window 7, 224 px"),
    ("swin-base-window7-224-22k", "swin_base_patch4_window7_224_22k", "Swin-B, window 7, 224 px"),
    (
        "swin-base-window12-384-22k",
        "swin_base_patch4_window12_384_22k",
        "Swin-B, window 12, 384 px",
    ),
    (
        "swin-large-window12-384-22k",
        "swin_large_patch4_window12_384_22k",
        "Swin-L, window 12, 384 px",
    ),
)


def _released_entries() -> list[WeightsEntry]:
    entries = []
    for variant, dataset, drive_id, figures in _RELEASED:
        data, splits = _DATASETS[dataset]
        name = f"{variant}-{dataset}"
        aliases = (name.replace("gref", "refcocog"),) if "gref" in name else ()
        entries.append(
            WeightsEntry(
                name=name,
                kind="lavt",
                variant=_VARIANT_NAMES[variant],
                data=data,
                filename=f"{name}.pth",
                gdrive_id=drive_id,
                results=dict(zip(splits, figures, strict=True)),
                aliases=aliases,
            )
        )
    for name, stem, variant in _SWIN:
        entries.append(
            WeightsEntry(
                name=name,
                kind="swin",
                variant=variant,
                data="ImageNet-22k" if stem.endswith("22k") else "ImageNet-1k",
                filename=f"{stem}.pth",
                url=SWIN_RELEASE + f"{stem}.pth",
                aliases=(stem, f"{stem}.pth"),
            )
        )
    for row in video_rows():
        entries.append(
            WeightsEntry(kind="lavt", task="video", filename=f"{row['name']}.pth", **row)
        )
    entries.append(
        WeightsEntry(
            name="bert-base-uncased",
            kind="text",
            variant="BERT-base, uncased (text encoder)",
            data="BooksCorpus + English Wikipedia",
            filename="",
            hf_repo="bert-base-uncased",
        )
    )
    return entries


KINDS = ("lavt", "swin", "text")
TASKS = ("image", "video")
_SOURCES = ("url", "gdrive_id", "hf_repo", "page")


def _text(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _check_kind(value: object) -> str | None:
    return None if value in KINDS else f"one of {', '.join(KINDS)}"


def _check_task(value: object) -> str | None:
    return None if value in TASKS else f"one of {', '.join(TASKS)}"


def _check_filename(value: object) -> str | None:
    if _text(value) or value in (".", "..") or "/" in value or "\\" in value:
        return "a file name (no folder)"
    return None


def _check_url(value: object) -> str | None:
    ok = isinstance(value, str) and urlsplit(value).scheme in ("http", "https")
    return None if value is None or ok else "an http(s):// URL"


def _check_sha256(value: object) -> str | None:
    ok = isinstance(value, str) and len(value) == 64
    ok = ok and all(c in "0123456789abcdefABCDEF" for c in value)
    return None if value is None or ok else "64 hexadecimal digits"


def _check_results(value: object) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100
        for v in value.values()
    )
    return None if ok else "an object of split or metric -> a number from 0 to 100"


def _check_aliases(value: object) -> str | None:
    ok = isinstance(value, list) and all(not _text(v) for v in value)
    return None if ok else "a list of non-empty strings"


#: what each field of a LAVT_WEIGHTS_TABLE entry must be (None: fine, else the expectation)
FIELD_CHECKS = {
    "name": _text,
    "kind": _check_kind,
    "variant": _text,
    "data": _text,
    "filename": _check_filename,
    "url": _check_url,
    "gdrive_id": _optional_text,
    "hf_repo": _optional_text,
    "sha256": _check_sha256,
    "results": _check_results,
    "aliases": _check_aliases,
    "task": _check_task,
    "page": _check_url,
}


def _table_entry(item: object, position: int, path: str) -> WeightsEntry:
    """One entry of the ``LAVT_WEIGHTS_TABLE`` file ``path``, every field checked."""
    where = f"LAVT_WEIGHTS_TABLE {path}"
    if not isinstance(item, dict):
        raise InputError(f"{where}: entry #{position} is a {type(item).__name__}, not an object")
    name = item.get("name")
    entry = f"{where}: entry #{position}" + (f" ({name})" if isinstance(name, str) else "")
    unknown = sorted(set(item) - set(FIELD_CHECKS))
    if unknown:
        raise InputError(f"{entry}: unknown field {unknown[0]} (known: {', '.join(FIELD_CHECKS)})")
    if "name" not in item:
        raise InputError(f"{entry}: field name is missing")
    for key, value in item.items():
        expected = FIELD_CHECKS[key](value)
        if expected:
            raise InputError(f"{entry}: field {key} must be {expected}, not {value!r:.60}")
    if not any(item.get(key) for key in _SOURCES):
        raise InputError(f"{entry}: needs one of the fields {', '.join(_SOURCES)}")
    url_name = urlsplit(item.get("url") or "").path.rsplit("/", 1)[-1]
    defaults = {"kind": "lavt", "variant": "?", "data": "?", "filename": url_name or f"{name}.pth"}
    fields = {**defaults, **item, "aliases": tuple(item.get("aliases", ())), "table": path}
    if FIELD_CHECKS["filename"](fields["filename"]):  # a URL ending in a folder
        raise InputError(f"{entry}: field filename is needed (the url names no file)")
    return WeightsEntry(**fields)


def _extra_entries() -> list[WeightsEntry]:
    """The entries of ``LAVT_WEIGHTS_TABLE``, checked when read: one line naming the
    entry and the field at fault, the same for every command."""
    path = os.environ.get("LAVT_WEIGHTS_TABLE")
    if not path:
        return []
    where = f"LAVT_WEIGHTS_TABLE {path}"
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{where}: unreadable ({getattr(err, 'strerror', None) or err})") from None
    except ValueError as err:
        raise InputError(f"{where}: malformed JSON ({err})") from None
    if not isinstance(items, list):
        raise InputError(f"{where}: expected a list of entries, found {type(items).__name__}")
    return [_table_entry(item, position, path) for position, item in enumerate(items)]


def all_entries() -> list[WeightsEntry]:
    """The built-in table, with ``LAVT_WEIGHTS_TABLE`` entries replacing or adding names."""
    table = {e.name: e for e in _released_entries()}
    table.update({e.name: e for e in _extra_entries()})
    return list(table.values())


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def find_entry(name: str) -> WeightsEntry | None:
    """The entry called ``name`` (case, ``_`` versus ``-`` and aliases do not matter)."""
    wanted = _key(name)
    for entry in all_entries():
        if wanted in {_key(n) for n in (entry.name, *entry.aliases)}:
            return entry
    return None


def close_names(name: str) -> list[str]:
    """Registered names that look like a misspelling of ``name``."""
    names = {_key(e.name): e.name for e in all_entries()}
    return [names[k] for k in difflib.get_close_matches(_key(name), names, n=3, cutoff=0.75)]
