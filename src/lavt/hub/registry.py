"""The table of released weights, by a name a person can type.

Figures are the overall IoU (%) published in the LAVT README (Yang et al.,
CVPR 2022, and its repository); mean IoU is not in this table. Checksums are
recorded at the first download (the upstream releases publish none).

Extra entries (a mirror, a private model, a test server) come from a JSON file
named by ``LAVT_WEIGHTS_TABLE``: a list of objects with the fields of
:class:`WeightsEntry`; an entry of the same name replaces the built-in one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lavt.errors import InputError

SWIN_RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
LAVT_HOMEPAGE = "https://github.com/yz93/LAVT-RIS"


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable file (or, for ``kind="text"``, a Hugging Face model)."""

    name: str
    kind: str  # "lavt" (a LAVT checkpoint), "swin" (ImageNet backbone), "text" (BERT)
    variant: str
    data: str  # training data
    filename: str  # name in the cache
    url: str | None = None
    gdrive_id: str | None = None
    hf_repo: str | None = None
    sha256: str | None = None
    results: dict[str, float] = field(default_factory=dict)  # split -> overall IoU (%)
    aliases: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """Where the file comes from, as shown to people."""
        if self.gdrive_id:
            return f"https://drive.google.com/file/d/{self.gdrive_id}/view"
        if self.url:
            return self.url
        return f"https://huggingface.co/{self.hf_repo}"

    @property
    def publisher(self) -> str:
        if self.gdrive_id:
            return "Google Drive (LAVT README)"
        if self.hf_repo:
            return "Hugging Face hub"
        return self.url.split("/")[2] if self.url else "?"


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


def _extra_entries() -> list[WeightsEntry]:
    path = os.environ.get("LAVT_WEIGHTS_TABLE")
    if not path:
        return []
    names = {f.name for f in dataclasses.fields(WeightsEntry)}
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = []
        for item in items:
            unknown = set(item) - names
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            item = {**item, "aliases": tuple(item.get("aliases", ()))}
            item.setdefault("kind", "lavt")
            item.setdefault("variant", "?")
            item.setdefault("data", "?")
            url_name = urlsplit(item.get("url") or "").path.rsplit("/", 1)[-1]
            item.setdefault("filename", url_name or f"{item.get('name')}.pth")
            entries.append(WeightsEntry(**item))
        return entries
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"LAVT_WEIGHTS_TABLE {path}: not a valid weights table ({err})") from None


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
