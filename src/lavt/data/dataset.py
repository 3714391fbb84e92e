"""Torch datasets over a :class:`~lavt.data.refer.ReferIndex`.

- :class:`ReferTrainDataset`: one item per referred object, with one of its
  expressions drawn at random; the draw depends only on (seed, epoch, ref), so
  it is reproducible and independent of the number of processes.
- :class:`ReferEvalDataset`: one item per referred object with *all* its
  expressions; :func:`collate_eval` flattens them so that one forward pass
  covers many expressions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lavt.data.refer import Ref, ReferIndex
from lavt.data.transforms import image_to_tensor, mask_to_tensor
from lavt.errors import InputError
from lavt.tokenizer import Tokenizer


def load_rgb(path, size: tuple[int, int] | None = None) -> Image.Image:
    """The image file as RGB (no EXIF rotation: COCO's masks are drawn on the stored pixels).

    ``size`` (width, height) is what ``instances.json`` says; a file of another
    size is refused, naming it (its masks would not line up with the picture).
    """
    try:
        with Image.open(path) as image:
            if size is not None and image.size != tuple(size):
                raise InputError(
                    f"{path}: the image is {image.size[0]}x{image.size[1]} but instances.json "
                    f"says {size[0]}x{size[1]} (width x height); its masks would not line up"
                )
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable image ({err})") from None


def _load_image(index: ReferIndex, image_id: int) -> Image.Image:
    record = index.images[image_id]
    return load_rgb(index.image_path(image_id), (int(record["width"]), int(record["height"])))


class ReferTrainDataset(Dataset):
    """(image (3,S,S), target (S,S) int64, input_ids (N,), attention_mask (N,)) per object."""

    def __init__(
        self,
        index: ReferIndex,
        refs: Sequence[Ref],
        *,
        tokenizer: Tokenizer,
        img_size: int,
        seed: int = 0,
    ) -> None:
        self.index = index
        self.refs = list(refs)
        self.tokenizer = tokenizer
        self.img_size = img_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose expression draw ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.refs)

    def sentence_index(self, item: int) -> int:
        ref = self.refs[item]
        return random.Random(f"{self.seed}/{self.epoch}/{ref.ref_id}").randrange(len(ref.sentences))

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        ref = self.refs[item]
        sentence = ref.sentences[self.sentence_index(item)]
        image = _load_image(self.index, ref.image_id)
        ids, mask = self.tokenizer([sentence.text])
        return {
            "image": image_to_tensor(image, self.img_size),
            "target": mask_to_tensor(self.index.ref_mask(ref), self.img_size),
            "input_ids": ids[0],
            "attention_mask": mask[0],
            "no_target": torch.tensor(ref.no_target),
        }


class ReferEvalDataset(Dataset):
    """Every expression of every object.

    Items: image (3,S,S), target (S,S), input_ids/attention_mask (E, N) for the
    E expressions, their texts and ids; with ``original_masks`` also the mask
    at the image's own size. ``swap_expressions`` gives each object the
    expressions of another object of the same image (a check that a model uses
    the language: its IoU should collapse); objects alone in their image are
    then left out.
    """

    def __init__(
        self,
        index: ReferIndex,
        refs: Sequence[Ref],
        *,
        tokenizer: Tokenizer,
        img_size: int,
        original_masks: bool = False,
        swap_expressions: bool = False,
    ) -> None:
        self.index = index
        self.tokenizer = tokenizer
        self.img_size = img_size
        self.original_masks = original_masks
        self.items: list[tuple[Ref, tuple]] = []
        for ref in refs:
            sentences = ref.sentences
            if swap_expressions:
                others = [r for r in index.refs_of_image(ref.image_id) if r.ann_ids != ref.ann_ids]
                if not others:
                    continue
                donor = others[ref.ref_id % len(others)]
                sentences = tuple(
                    donor.sentences[k % len(donor.sentences)] for k in range(len(sentences))
                )
            self.items.append((ref, sentences))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> dict[str, Any]:
        ref, sentences = self.items[item]
        image = _load_image(self.index, ref.image_id)
        mask = self.index.ref_mask(ref)
        ids, attention = self.tokenizer([s.text for s in sentences])
        out = {
            "image": image_to_tensor(image, self.img_size),
            "target": mask_to_tensor(mask, self.img_size),
            "input_ids": ids,  # (E, N)
            "attention_mask": attention,  # (E, N)
            "ref_id": ref.ref_id,
            "image_id": ref.image_id,
            "no_target": ref.no_target,
            "sent_ids": [s.sent_id for s in ref.sentences],
            "texts": [s.text for s in sentences],
        }
        if self.original_masks:
            out["original_target"] = torch.from_numpy(mask.astype(np.bool_))
        return out


def collate_train(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([b[key] for b in batch]) for key in batch[0]}


def collate_eval(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack objects and flatten their expressions.

    Returns images (B,3,S,S), targets (B,S,S), input_ids/attention_mask (E,N)
    for all E expressions, ``image_index`` (E,) mapping each expression to its
    object, and per-expression ref ids, sentence ids and texts.
    """
    counts = [b["input_ids"].shape[0] for b in batch]
    out = {
        "images": torch.stack([b["image"] for b in batch]),
        "targets": torch.stack([b["target"] for b in batch]),
        "input_ids": torch.cat([b["input_ids"] for b in batch]),
        "attention_mask": torch.cat([b["attention_mask"] for b in batch]),
        "image_index": torch.repeat_interleave(torch.arange(len(batch)), torch.tensor(counts)),
        "ref_ids": [b["ref_id"] for b, n in zip(batch, counts, strict=True) for _ in range(n)],
        "sent_ids": [s for b in batch for s in b["sent_ids"]],
        "texts": [t for b in batch for t in b["texts"]],
        "no_target": torch.tensor(
            [b["no_target"] for b, n in zip(batch, counts, strict=True) for _ in range(n)],
            dtype=torch.bool,
        ),  # (E,)
    }
    if "original_target" in batch[0]:
        out["original_targets"] = [b["original_target"] for b in batch]
    return out
