"""The user-facing predictor (segment-anything's ``SamPredictor`` pattern).

::

    import lavt
    predictor = lavt.Predictor.from_checkpoint()  # the bundled model; or a path
    for result in predictor.predict("scene.jpg", ["the blue one", "the big red circle"]):
        print(result.text, result.foreground_fraction)

The image is preprocessed as in training (square resize to the model's
img_size, ImageNet normalisation); the expressions run through the model a
chunk at a time, and each one's logits are brought back to the image's own size
by :meth:`LAVT.postprocess`, one expression at a time, so memory does not grow
with the number of expressions beyond the masks themselves (bool, H x W each).
:meth:`Predictor.iter_predict` yields them one by one, keeping none.

Each result also says whether an object was found at all (generalized referring
segmentation, docs/gres.md): from the model's no-target head when it has one
(``no_target_probability``), else from the mask-area rule (``found`` iff the
mask has more than ``area_threshold`` pixels at the model's input size; with the
default 0 that is "the mask is not empty", so classic models behave as before).
When nothing is found the mask is empty.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lavt.assets import default_model_path
from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError, LavtError
from lavt.imageio import load_image, to_rgb
from lavt.modeling import LAVT, LAVTVideo
from lavt.modeling.no_target import (
    check_rule,
    decide_no_target,
    no_target_probability,
    resolve_rule,
)
from lavt.precision import prepare_for_inference
from lavt.predict.notices import notice_image, notice_tokens
from lavt.runtime import autocast, select_device
from lavt.tokenizer import check_expression, tokenizer_for_model

ImageLike = str | os.PathLike | Image.Image | np.ndarray


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


class Predictor:
    """Segments the objects that expressions refer to in an image.

    Args:
        model: a LAVT (e.g. from :func:`lavt.load_model`); moved to ``device``
            and put in eval mode.
        device: ``auto`` (default: CUDA when available, else the CPU), ``cpu``,
            ``cuda``, ``cuda:N``.
        img_size: square input size; default the model's training size.
        amp: autocast dtype (``torch.bfloat16``) around the model as given, or
            None for float32. Prefer ``dtype``.
        dtype: ``auto``, ``float32``, ``bfloat16``, ``float16`` or ``int8``
            (:mod:`lavt.precision`): the predictor holds its own low-precision copy
            of the model (weights cast once; the caller's model is not changed);
            ``auto`` picks bf16 only where it pays. Not with ``amp``.
        chunk_size: expressions per forward pass.
        bundled: the model is the bundled synthetic-shapes model (set by
            :meth:`from_checkpoint`); it then warns once on photograph-like images.
        no_target_rule: how "no object" is decided: ``auto`` (the head when the
            model has one, else the area rule), ``head`` or ``area``.
        area_threshold: the area rule's tau: "no object" when the mask has at most
            this many pixels at the model's input size.
    """

    def __init__(
        self,
        model: LAVT,
        *,
        device: str | torch.device | None = None,
        img_size: int | None = None,
        amp: torch.dtype | None = None,
        chunk_size: int = 8,
        bundled: bool = False,
        no_target_rule: str = "auto",
        area_threshold: int = 0,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        if isinstance(model, LAVTVideo):
            raise InputError(
                "checkpoint: a lavt_video (video) model; the predictor takes image models "
                "(video inference is not implemented yet, docs/video.md)",
                param="checkpoint",
            )
        self.device = select_device(device if device is not None else "auto")
        self.img_size = int(img_size or model.config.img_size)
        if self.img_size < 16:
            raise InputError(f"img_size {self.img_size}: must be at least 16", param="img_size")
        if chunk_size < 1:
            raise InputError(f"chunk_size {chunk_size}: must be at least 1", param="chunk_size")
        check_rule(no_target_rule, area_threshold)
        self.no_target_rule = resolve_rule(
            no_target_rule, getattr(model, "no_target_head", None) is not None
        )
        self.area_threshold = area_threshold
        self.tokenizer = tokenizer_for_model(model)
        self.model, self.precision = prepare_for_inference(model, self.device, dtype, amp=amp)
        self.amp = self.precision.amp
        self.chunk_size = chunk_size
        vocab = getattr(model, "vocab", None)
        self.knows_synthetic_only = bundled or (vocab is not None and len(vocab) < 1000)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        runtime: str = "torch",
        **kwargs,
    ) -> Predictor:
        """Load ``path`` (default: the bundled model) and wrap it.

        ``runtime="onnxruntime"`` runs a graph written by ``lavt export`` instead.
        """
        from lavt.export.runner import load_for_runtime

        device = select_device(device if device is not None else "auto")
        default = default_model_path()
        source = Path(path) if path is not None else default
        bundled = path is None or (source.is_file() and source.samefile(default))
        model = load_for_runtime(path, runtime=runtime, device=device)
        return cls(model, device=device, bundled=bundled, **kwargs)

    def _as_image(self, image: ImageLike) -> Image.Image:
        if isinstance(image, Image.Image):
            return to_rgb(image)
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or not (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
            ):
                raise InputError(
                    "image: arrays must be uint8 (H, W), (H, W, 3) or (H, W, 4)", param="image"
                )
            return to_rgb(Image.fromarray(image))
        return load_image(image)

    def predict(
        self, image: ImageLike, texts: str | Sequence[str], *, probability: bool = False
    ) -> list[Prediction]:
        """Masks for each expression in ``texts``, at the image's size.

        ``probability=True`` also keeps each expression's (H, W) float32
        probability map (4 bytes a pixel each: leave it off for large images).
        """
        return list(self.iter_predict(image, texts, probability=probability))

    @torch.inference_mode()
    def iter_predict(
        self, image: ImageLike, texts: str | Sequence[str], *, probability: bool = False
    ) -> Iterator[Prediction]:
        """Like :meth:`predict`, yielding one :class:`Prediction` at a time."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("texts: no expression given", param="texts")
        for k, text in enumerate(texts):
            check_expression(text, name=f"texts[{k}]")
        picture = self._as_image(image)
        width, height = picture.size
        if self.knows_synthetic_only:
            notice_image(picture, self.img_size)
        pixels = image_to_tensor(picture, self.img_size).to(self.device)  # (3, S, S)
        ids, attention = self.tokenizer(texts)  # (E, N) each
        notice_tokens(self.tokenizer, texts, ids, synthetic_only=self.knows_synthetic_only)
        for start in range(0, len(texts), self.chunk_size):
            stop = min(start + self.chunk_size, len(texts))
            with self._memory_errors(width, height):
                batch = pixels.unsqueeze(0).expand(stop - start, -1, -1, -1)  # (c, 3, S, S)
                with autocast(self.device, self.amp):
                    logits, nt_logits = self.model(
                        batch,
                        ids[start:stop].to(self.device),
                        attention[start:stop].to(self.device),
                        return_no_target=True,
                    )  # (c, 2, S, S), (c, 2) or None
            rows = predictions_from_logits(
                texts[start:stop],
                logits,
                nt_logits,
                (height, width),
                rule=self.no_target_rule,
                area_threshold=self.area_threshold,
                probability=probability,
            )
            for _ in range(stop - start):
                with self._memory_errors(width, height):
                    prediction = next(rows)
                yield prediction

    @contextlib.contextmanager
    def _memory_errors(self, width: int, height: int) -> Iterator[None]:
        """An out-of-memory failure as a one-line error instead of a traceback."""
        try:
            yield
        except (MemoryError, RuntimeError) as err:
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if not isinstance(err, MemoryError | torch.OutOfMemoryError) and not any(
                word in text.lower() for word in ("allocate", "out of memory")
            ):
                raise
            raise LavtError(
                f"out of memory on {self.device} for a {width}x{height} image "
                f"({text[:160]}); use a smaller image or fewer expressions per chunk"
            ) from None


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
    no_target = decide_no_target(
        logits.float(), no_target_logits, rule=rule, area_threshold=area_threshold
    ).tolist()  # (E,)
    nt_probs = (
        [None] * len(texts)
        if no_target_logits is None
        else no_target_probability(no_target_logits).tolist()
    )
    for row, text in enumerate(texts):
        found = not no_target[row]
        foreground = LAVT.postprocess(logits[row : row + 1], size)  # (1, H, W) log-odds
        mask = foreground > 0
        if not found:
            mask = torch.zeros_like(mask)
        (score,) = mean_probabilities(foreground, mask)
        foreground, mask = foreground[0], mask[0]  # (1, H, W) -> (H, W)
        probs = foreground.sigmoid_().cpu().numpy() if probability else None
        yield Prediction(text, mask.cpu().numpy(), score, probs, found, nt_probs[row])


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
