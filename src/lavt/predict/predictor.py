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

:meth:`Predictor.predict_video` segments a video (a file, a folder of frames or
any iterable of images) a clip at a time (:mod:`lavt.predict.video`, the
LAVT-RS protocol for a ``lavt_video`` model, frame by frame for an image model),
yielding a :class:`FramePrediction` per frame; docs/video.md.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lavt.assets import default_model_path
from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError, LavtError
from lavt.imageio import load_image, to_rgb
from lavt.modeling import LAVT, LAVTVideo
from lavt.modeling.no_target import check_rule, resolve_rule
from lavt.precision import prepare_for_inference
from lavt.predict.notices import notice_image, notice_tokens
from lavt.predict.results import (  # re-exported: lavt.predict.predictor.Prediction stays
    FramePrediction,
    Prediction,
    prediction_from_logodds,
    predictions_from_logits,
)
from lavt.predict.video import DEFAULT_CLIP_LENGTH, check_clip_length, segment_frames
from lavt.runtime import autocast, select_device
from lavt.tokenizer import check_expression, tokenizer_for_model
from lavt.videoio import Video, VideoFrame, open_video

ImageLike = str | os.PathLike | Image.Image | np.ndarray
#: a video file or a folder of frames (path), an opened :class:`Video`, or images in order
VideoLike = str | os.PathLike | Video | Iterable[Image.Image | np.ndarray]


class Predictor:
    """Segments the objects that expressions refer to in an image or a video.

    Args:
        model: a LAVT or a LAVTVideo (e.g. from :func:`lavt.load_model`); moved
            to ``device`` and put in eval mode. A video model segments videos only
            (:meth:`predict_video`); an image model both (a video frame by frame).
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
        model: LAVT | LAVTVideo,
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
        self.is_video = isinstance(model, LAVTVideo)
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

    def check_image_model(self) -> None:
        """Refuse, in one line, to segment an image with a video model."""
        if self.is_video:
            raise InputError(
                "checkpoint: a lavt_video (video) model segments videos, not images: use "
                "Predictor.predict_video (lavt predict --video)",
                param="checkpoint",
            )

    def _texts(self, texts: str | Sequence[str]) -> list[str]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("texts: no expression given", param="texts")
        for k, text in enumerate(texts):
            check_expression(text, name=f"texts[{k}]")
        return texts

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
        self.check_image_model()
        texts = self._texts(texts)
        picture = self._as_image(image)
        width, height = picture.size
        if self.knows_synthetic_only:
            notice_image(picture, self.img_size)
        pixels = image_to_tensor(picture, self.img_size).to(self.device)  # (3, S, S)
        ids, attention = self.tokenizer(texts)  # (E, N) each
        notice_tokens(self.tokenizer, texts, ids, synthetic_only=self.knows_synthetic_only)
        for start in range(0, len(texts), self.chunk_size):
            stop = min(start + self.chunk_size, len(texts))
            with self._memory_errors(f"a {width}x{height} image"):
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
                with self._memory_errors(f"a {width}x{height} image"):
                    prediction = next(rows)
                yield prediction

    def predict_video(
        self,
        video: VideoLike,
        texts: str | Sequence[str],
        *,
        clip_length: int = DEFAULT_CLIP_LENGTH,
        probability: bool = False,
    ) -> Iterator[FramePrediction]:
        """Each frame's masks for every expression in ``texts``, frame by frame, in order.

        ``video``: a video file or a folder of frames (:func:`lavt.videoio.open_video`;
        checked now, decoded while iterating), an opened :class:`Video`, or an
        iterable of images. A ``lavt_video`` model sees ``clip_length`` consecutive
        frames at a time (0: the whole video as one clip, the LAVT-RS protocol,
        memory growing with the video); an image model sees one frame at a time
        (``clip_length`` frames decoded ahead; 0: ``chunk_size``). At most that many
        decoded frames are held. ``found`` is "the mask is not empty" (neither a
        no-target head nor an area threshold applies to video). Each result holds
        its frame's image: keep only the masks if you keep many results.
        """
        texts = self._texts(texts)
        check_clip_length(clip_length)  # refused now, not when iterating
        if isinstance(video, str | os.PathLike):
            video = open_video(video)
        frames = (
            video.frames()
            if isinstance(video, Video)
            else (VideoFrame(t, self._as_image(image)) for t, image in enumerate(video))
        )
        ids, attention = self.tokenizer(texts)  # (E, N) each
        notice_tokens(self.tokenizer, texts, ids, synthetic_only=self.knows_synthetic_only)
        return self._iter_video(frames, texts, ids, attention, clip_length, probability)

    def _iter_video(
        self,
        frames: Iterator[VideoFrame],
        texts: list[str],
        ids: torch.Tensor,
        attention: torch.Tensor,
        clip_length: int,
        probability: bool,
    ) -> Iterator[FramePrediction]:
        pending: deque[VideoFrame] = deque()  # frames handed to the model, not yet yielded

        def images() -> Iterator[Image.Image]:
            for frame in frames:
                if frame.index == 0 and self.knows_synthetic_only:
                    notice_image(frame.image, self.img_size)
                pending.append(frame)
                yield frame.image

        if not self.is_video:  # frame by frame whatever the grouping: never the whole video
            clip_length = clip_length or self.chunk_size
        outputs = segment_frames(
            self.model, images(), ids, attention, img_size=self.img_size,
            clip_length=clip_length, device=self.device, amp=self.amp, chunk_size=self.chunk_size,
        )  # fmt: skip
        what = f"a clip of up to {clip_length} frames" if clip_length else "the whole video"
        while True:
            with self._memory_errors(what, hint="a shorter clip_length"):
                foreground = next(outputs, None)  # (E, H, W) log-odds
            if foreground is None:
                return
            frame = pending.popleft()
            rows = [
                prediction_from_logodds(text, foreground[k], probability=probability)
                for k, text in enumerate(texts)
            ]
            del foreground
            yield FramePrediction(frame, rows)

    @contextlib.contextmanager
    def _memory_errors(
        self, what: str, *, hint: str = "a smaller image or fewer expressions per chunk"
    ) -> Iterator[None]:
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
                f"out of memory on {self.device} for {what} ({text[:160]}); use {hint}"
            ) from None
