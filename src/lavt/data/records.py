"""Ref records and the safe pickle reader, shared by every refs format.

:mod:`lavt.data.refer` picks the format of a dataset and :mod:`lavt.data.grefcoco`
parses the gRefCOCO one; both build these records, so they live below both.
The pickle reader refuses every global, so a crafted refs file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lavt.errors import InputError


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


__all__ = ["Ref", "Sentence", "safe_unpickle"]
