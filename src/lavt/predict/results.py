"""What the predictor returns, and the one postprocessing that makes it.

- :class:`Prediction`: one expression's mask, score and "found" at the image's size;
- :class:`FramePrediction`: one video frame's predictions (:meth:`Predictor.predict_video`);
- :func:`predictions_from_logits`: model outputs -> predictions (the predictor,
  ``lavt serve``, bulk inference); :func:`prediction_from_logodds`: one expression's
  log-odds at full size -> its prediction (that function and video inference).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lavt.modeling import LAVT
from lavt.modeling.no_target import decide_no_target, no_target_probability
from lavt.videoio import VideoFrame


@dataclass
class Prediction:
    """One expression's result; arrays are at the image's own size (H, W)."""

    text: str
    mask: np.ndarray  # (H, W) bool
    mean_foreground_probability: float  # mean probability over the mask's pixels (0 if empty)
    probability: np.ndarray | None = None  # (H, W) float32, only when asked for
    found: bool | None = None  # False: the expression names no object (the mask is empty)
    no_target_probability: float | None = None  # from the no-target head; None without one

    def __post_init__(self) -> None:
        if self.found is None:  # built without a decision: the area rule with tau = 0
            self.found = bool(self.mask.any())

    @property
    def foreground_fraction(self) -> float:
        return float(self.mask.mean())


@dataclass
class FramePrediction:
    """One video frame's results (:meth:`Predictor.predict_video`), masks at the frame's size."""

    frame: VideoFrame  # index, the decoded image, and the file name or time when known
    predictions: list[Prediction]  # one per expression, in the order given

    @property
    def index(self) -> int:
        return self.frame.index


def predictions_from_logits(
    texts: Sequence[str],
    logits: torch.Tensor,
    no_target_logits: torch.Tensor | None,
    size: tuple[int, int],
    *,
    rule: str,
    area_threshold: int = 0,
    probability: bool = False,
) -> Iterator[Prediction]:
    """Model outputs -> one :class:`Prediction` per text, at the image's ``size`` (H, W).

    ``logits`` (E, 2, S, S) and ``no_target_logits`` (E, 2) (None without a head)
    are one forward's outputs for ``texts``; ``rule`` is ``head`` or ``area`` (as
    resolved by :func:`lavt.modeling.no_target.resolve_rule`). The one postprocessing
    of :class:`Predictor` and ``lavt serve``: each expression is brought to full
    size alone (:meth:`LAVT.postprocess`), so memory does not grow with E; the mask
    is empty when nothing is found.
    """
    no_target, nt_probs = no_target_decisions(
        logits, no_target_logits, rule=rule, area_threshold=area_threshold
    )
    no_target = no_target.tolist()  # (E,)
    for row, text in enumerate(texts):
        foreground = LAVT.postprocess(logits[row : row + 1], size)[0]  # (H, W) log-odds
        yield prediction_from_logodds(
            text,
            foreground,
            found=not no_target[row],
            no_target_probability=nt_probs[row],
            probability=probability,
        )


def no_target_decisions(
    logits: torch.Tensor,
    no_target_logits: torch.Tensor | None,
    *,
    rule: str,
    area_threshold: int = 0,
) -> tuple[torch.Tensor, list[float | None]]:
    """logits (E, 2, S, S), no-target logits (E, 2) or None -> "nothing found" per row,
    (E,) bool, and each row's no-target probability (None without a head)."""
    no_target = decide_no_target(
        logits.float(), no_target_logits, rule=rule, area_threshold=area_threshold
    )  # (E,) bool
    if no_target_logits is None:
        return no_target, [None] * len(no_target)
    return no_target, no_target_probability(no_target_logits).tolist()


def prediction_from_logodds(
    text: str,
    foreground: torch.Tensor,
    *,
    found: bool | None = None,
    no_target_probability: float | None = None,
    probability: bool = False,
) -> Prediction:
    """One expression's (H, W) object log-odds at the image's size -> its :class:`Prediction`.

    The mask is ``foreground > 0`` (empty when ``found`` is False; ``found`` None:
    "the mask is not empty"); the score is the mean probability over the mask.
    ``foreground`` is changed in place when ``probability`` is asked for.
    """
    mask = foreground > 0
    if found is False:
        mask = torch.zeros_like(mask)
    (score,) = mean_probabilities(foreground[None], mask[None])
    probs = foreground.sigmoid_().cpu().numpy() if probability else None
    return Prediction(text, mask.cpu().numpy(), score, probs, found, no_target_probability)


def mean_probabilities(foreground: torch.Tensor, masks: torch.Tensor) -> list[float]:
    """foreground (E, H, W) log-odds, masks (E, H, W) bool -> each mask's mean
    foreground probability, ``foreground[mask].sigmoid().mean()`` (0 when empty).

    The selected values are taken with numpy's boolean indexing on the CPU
    (cheaper than torch's, the same values in the same order, so the same mean).
    """
    if foreground.device.type == "cpu":
        pairs = zip(foreground.numpy(), masks.numpy(), strict=True)
        chosen = [torch.from_numpy(f[m]) for f, m in pairs]  # E x (n,)
    else:
        chosen = [torch.masked_select(f, m) for f, m in zip(foreground, masks, strict=True)]
    return [float(c.sigmoid_().mean()) if c.numel() else 0.0 for c in chosen]  # c: a copy
