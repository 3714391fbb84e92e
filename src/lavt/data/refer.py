"""Reading RefCOCO / RefCOCO+ / G-Ref in the ``refer`` layout.

``<root>/<dataset>/refs(<splitBy>).p`` (a pickled list of plain dicts),
``<root>/<dataset>/instances.json`` (COCO-style) and the images under
``<root>/images/mscoco/images/train2014/``, or under ``<root>/<dataset>/images/``
when the dataset has its own image folder (``lavt data import``). Any dataset name
is read; a folder holding ``grefs(<splitBy>).json`` and no refs pickle is read as
generalized (gRefCOCO rules), whatever its name. The pickle is read with an
unpickler that refuses every global, so a crafted file cannot run code.

Masks are the union of all parts of an annotation (polygons, or RLE compressed
or not). The reference pipeline instead sums the per-polygon masks and keeps
pixels equal to 1, so pixels covered by two parts of one annotation become
background there, and it cannot read RLE; this is the one deliberate difference.

Everything a later step would trip over is checked when the index is loaded,
with messages naming the file and the ref, image or annotation id: links
between refs and instances, image records (a ``file_name`` inside the image
folder, positive sizes) and the segmentations of the referred annotations.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from lavt.data.masks import segmentation_problem, segmentation_to_mask
from lavt.errors import InputError

log = logging.getLogger("lavt")

DATASETS = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
    "grefcoco": ("unc",),
}
REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars only; any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")


def safe_unpickle(path: Path) -> Any:
    """Load a pickle of plain data (lists, dicts, str, numbers) from ``path``."""
    data = path.read_bytes()
    for encoding in ("ASCII", "latin1"):  # latin1: pickles written by Python 2
        try:
            return _PlainUnpickler(io.BytesIO(data), encoding=encoding).load()
        except UnicodeDecodeError:
            continue
        except pickle.UnpicklingError as err:
            if "refusing" in str(err):
                raise InputError(f"{path}: not a plain refs pickle ({err})") from None
            raise InputError(f"{path}: unreadable pickle ({err})") from None
        except Exception as err:  # truncated or garbage bytes
            raise InputError(f"{path}: unreadable pickle ({type(err).__name__}: {err})") from None
    raise InputError(f"{path}: unreadable pickle (unknown text encoding)")


@dataclass(frozen=True)
class Sentence:
    sent_id: int
    text: str


@dataclass(frozen=True)
class Ref:
    """One referred object (gRefCOCO: zero or more objects) with its expressions.

    ``ann_ids`` are the annotations whose union is the ground truth: ``(ann_id,)``
    for RefCOCO; for gRefCOCO the non-crowd targets, empty for a no-target ref
    (whose ``ann_id`` is then -1).
    """

    ref_id: int
    ann_id: int
    image_id: int
    category_id: int
    split: str
    sentences: tuple[Sentence, ...]
    ann_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.ann_ids and self.ann_id >= 0:
            object.__setattr__(self, "ann_ids", (self.ann_id,))

    @property
    def no_target(self) -> bool:
        """The expressions name no object (the ground truth is empty)."""
        return not self.ann_ids


def split_matches(query: str, ref_split: str) -> bool:
    """The split rules: ``testA``/``testB``/``testC`` select refs whose split contains
    that letter, ``test`` those whose split contains "test", others match exactly."""
    if query in ("testA", "testB", "testC"):
        return query[-1] in ref_split
    if query == "test":
        return "test" in ref_split
    return ref_split == query


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} is not readable")


def _parse_refs(raw: Any, path: Path) -> list[Ref]:
    if not isinstance(raw, list):
        raise InputError(f"{path}: expected a list of refs, found {type(raw).__name__}")
    refs = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict) or any(k not in item for k in REF_KEYS):
            missing = [k for k in REF_KEYS if not isinstance(item, dict) or k not in item]
            raise InputError(f"{path}: ref #{position} lacks {', '.join(missing)}")
        try:
            sentences = tuple(
                Sentence(int(s["sent_id"]), str(s.get("raw") or s["sent"]))
                for s in item["sentences"]
            )
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: ref {item['ref_id']} has malformed sentences") from None
        refs.append(
            Ref(
                int(item["ref_id"]),
                int(item["ann_id"]),
                int(item["image_id"]),
                int(item.get("category_id", 0)),
                str(item["split"]),
                sentences,
            )
        )
    return refs


def _load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: malformed JSON ({err})") from None
    except (UnicodeDecodeError, OSError) as err:
        raise InputError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise InputError(f"{path}: expected 'images' and 'annotations' lists")
    try:
        images = {int(im["id"]): im for im in data["images"]}
        anns = {int(a["id"]): a for a in data["annotations"]}
        for record, keys in [(im, ("file_name", "height", "width")) for im in images.values()] + [
            (a, ("segmentation", "image_id")) for a in anns.values()
        ]:
            missing = [k for k in keys if k not in record]
            if missing:
                raise KeyError(missing[0])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: an image or annotation lacks {err}") from None
    return images, anns


class ReferIndex:
    """Refs, annotations and images of one dataset/splitBy, checked on load."""

    def __init__(
        self, root: str | os.PathLike, dataset: str = "refcoco", split_by: str = "unc"
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"data_root {self.root}: folder not found", param="data_root")
        if dataset in DATASETS and split_by not in DATASETS[dataset]:
            raise InputError(
                f"split_by {split_by}: {dataset} comes with splitBy {', '.join(DATASETS[dataset])}",
                param="split_by",
            )
        self.dataset, self.split_by = dataset, split_by
        self.generalized = dataset == "grefcoco" or _holds_grefs_only(self.root / dataset, split_by)
        refs_path = self._refs_path()
        instances_path = self.root / dataset / "instances.json"
        _check_split_by(refs_path, split_by)
        _require_file(refs_path, "refs file")
        _require_file(instances_path, "instances file")
        if self.generalized:
            from lavt.data.grefcoco import load_grefs, parse_grefs

            self.images, self.annotations = _load_instances(instances_path)
            self.refs = parse_grefs(load_grefs(refs_path), refs_path, self.annotations)
        else:
            self.refs = _parse_refs(safe_unpickle(refs_path), refs_path)
            self.images, self.annotations = _load_instances(instances_path)
        self.image_dir = self._image_dir()
        self._check_links(refs_path, instances_path)
        self._check_records(instances_path)
        self._refs_of_image: dict[int, list[Ref]] = {}
        for ref in self.refs:
            self._refs_of_image.setdefault(ref.image_id, []).append(ref)

    def _refs_path(self) -> Path:
        if self.generalized:
            from lavt.data.grefcoco import grefs_path

            return grefs_path(self.root / self.dataset, self.split_by)
        return self.root / self.dataset / f"refs({self.split_by}).p"

    def _image_dir(self) -> Path:
        """``<dataset>/images`` when the dataset has its own (``lavt data import``);
        else RefCOCO: ``images/mscoco/images/train2014``; gRefCOCO: ``images/train2014``
        (the GRES layout), or the RefCOCO folder when only that one exists."""
        own_dir = self.root / self.dataset / "images"
        if own_dir.is_dir():
            return own_dir
        refer_dir = self.root / "images" / "mscoco" / "images" / "train2014"
        if not self.generalized:
            return refer_dir
        gres_dir = self.root / "images" / "train2014"
        return refer_dir if not gres_dir.is_dir() and refer_dir.is_dir() else gres_dir

    def _check_links(self, refs_path: Path, instances_path: Path) -> None:
        for ref in self.refs:
            for ann_id in ref.ann_ids:
                if ann_id not in self.annotations:
                    raise InputError(
                        f"{refs_path}: ref {ref.ref_id} points to annotation {ann_id}, "
                        f"which {instances_path.name} lacks"
                    )
            if ref.image_id not in self.images:
                raise InputError(
                    f"{refs_path}: ref {ref.ref_id} points to image {ref.image_id}, "
                    f"which {instances_path.name} lacks"
                )

    def _check_records(self, instances_path: Path) -> None:
        """Image records and segmentations of the referred objects, before anything runs."""
        for image_id in {ref.image_id for ref in self.refs}:
            problem = _image_problem(self.images[image_id])
            if problem:
                raise InputError(f"{instances_path}: image {image_id}: {problem}")
        for ann_id in {a for ref in self.refs for a in ref.ann_ids}:
            ann = self.annotations[ann_id]
            image = self.images.get(_as_int(ann["image_id"]))
            if image is None:
                raise InputError(
                    f"{instances_path}: annotation {ann_id}: its image {ann['image_id']} is missing"
                )
            problem = segmentation_problem(
                ann["segmentation"], int(image["height"]), int(image["width"])
            )
            if problem:
                raise InputError(f"{instances_path}: annotation {ann_id}: {problem}")

    def split(self, name: str) -> list[Ref]:
        """Refs of a split, by the rules of :func:`split_matches`."""
        refs = [r for r in self.refs if split_matches(name, r.split)]
        if not refs:
            present = sorted({r.split for r in self.refs})
            raise InputError(
                f"split {name}: no refs in this split (the file has {', '.join(present)})",
                param="split",
            )
        return refs

    def refs_of_image(self, image_id: int) -> list[Ref]:
        return self._refs_of_image.get(image_id, [])

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.images[image_id]["file_name"]

    def missing_images(self, refs: Sequence[Ref]) -> list[Path]:
        """Image files of ``refs`` that are not on disk."""
        seen: dict[int, Path] = {}
        for ref in refs:
            seen.setdefault(ref.image_id, self.image_path(ref.image_id))
        return [p for p in seen.values() if not p.is_file()]

    def check_images(self, refs: list[Ref], *, skip_missing: bool) -> list[Ref]:
        """Refs whose image exists; missing images are an error unless ``skip_missing``."""
        missing = self.missing_images(refs)
        if not missing:
            return refs
        examples = ", ".join(p.name for p in missing[:3])
        message = f"{len(missing)} image files are missing from {self.image_dir} (e.g. {examples})"
        if not skip_missing:
            raise InputError(message + "; pass --skip-missing to evaluate without them")
        log.warning("%s; skipping their refs", message)
        gone = {p.name for p in missing}
        return [r for r in refs if self.images[r.image_id]["file_name"] not in gone]

    def ref_mask(self, ref: Ref) -> np.ndarray:
        """(H, W) uint8 ground truth of ``ref``: the union of its targets' masks
        (binarised, so overlapping objects stay 1); all zeros for a no-target ref."""
        image = self.images[ref.image_id]
        union = np.zeros((int(image["height"]), int(image["width"])), dtype=np.uint8)
        for ann_id in ref.ann_ids:
            union |= self.mask(ann_id) > 0
        return union

    def mask(self, ann_id: int) -> np.ndarray:
        """(H, W) uint8 mask at the image's size: the union of all parts."""
        ann = self.annotations[ann_id]
        image = self.images[ann["image_id"]]
        return segmentation_to_mask(ann["segmentation"], int(image["height"]), int(image["width"]))


def _check_split_by(refs_path: Path, split_by: str) -> None:
    """A missing refs file whose folder holds another splitBy's: say which to pass."""
    if refs_path.is_file() or not refs_path.parent.is_dir():
        return
    others = sorted(
        p.name.split("(", 1)[1].split(")", 1)[0]
        for pattern in ("refs(*).p", "grefs(*).json", "grefs(*).p")
        for p in refs_path.parent.glob(pattern)
    )
    if others:
        raise InputError(
            f"split_by {split_by}: {refs_path} not found; {refs_path.parent.name} comes with "
            f"splitBy {', '.join(dict.fromkeys(others))}",
            param="split_by",
        )


def _holds_grefs_only(folder: Path, split_by: str) -> bool:
    """A folder with gRefCOCO refs (``grefs(<splitBy>).json/.p``) and no ``refs(...).p``:
    a generalized dataset under another name than grefcoco (``lavt data import
    --generalized``)."""
    if (folder / f"refs({split_by}).p").is_file():
        return False
    return any((folder / f"grefs({split_by}){ext}").is_file() for ext in (".json", ".p"))


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _image_problem(image: dict[str, Any]) -> str | None:
    """What is wrong with an image record (its size, or a file name leaving the folder)."""
    for key in ("height", "width"):
        value = image[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return f"{key} {value!r} is not a positive integer"
    name = image["file_name"]
    if not isinstance(name, str) or not name:
        return "file_name is not a file name"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        return f"file_name {name!r} points outside the image folder"
    return None


__all__ = ["Ref", "ReferIndex", "Sentence", "segmentation_to_mask", "split_matches"]
