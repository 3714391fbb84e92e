"""Video inference core: frames in, per-frame object log-odds out, a clip at a time.

The protocol of the LAVT authors' video test (LAVT-RS ``test_ytvos.py``;
docs/video.md): every frame resized to the model's square input size and
normalised as in training (:func:`lavt.data.transforms.image_to_tensor`), the
frames run through the model as one clip, the logits brought back to each
frame's size by the model's own postprocessing (:meth:`LAVTVideo.postprocess`:
bilinear, aligned corners), the mask their argmax. A video longer than
``clip_length`` frames runs as consecutive clips of ``clip_length`` frames (the
last one shorter), so memory is bounded by ``clip_length``, not by the video.

An image model (:class:`lavt.modeling.LAVT`) runs on the same frames one by one
(the per-frame baseline), with its own postprocessing.

Several expressions share the decoded frames: a clip runs once per expression
chunk, with the frames expanded (not copied) along the batch axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from PIL import Image

from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError
from lavt.modeling import LAVT, LAVTVideo
from lavt.runtime import autocast

VideoModel = LAVT | LAVTVideo

#: frames per clip unless asked otherwise: meant to hold a whole Refer-YouTube-VOS valid
#: video (YouTube-VOS clips are 3-6 s, sampled every fifth frame of 30 fps: at most 36
#: frames), so there the authors' whole-video protocol is unchanged, and a longer video
#: runs as 36-frame clips (memory bounded). 0: the whole video as one clip.
DEFAULT_CLIP_LENGTH = 36


def check_clip_length(clip_length: int) -> None:
    """Refuse a negative ``clip_length`` (0 is the whole video as one clip)."""
    if clip_length < 0:
        raise InputError(
            f"clip_length {clip_length}: must be 0 (whole video) or more", param="clip_length"
        )


def clip_foreground(
    model: VideoModel,
    pixels: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    amp: torch.dtype | None = None,
    chunk_size: int = 8,
) -> torch.Tensor:
    """One clip's object log-odds at the model's input size.

    ``pixels`` (T, 3, S, S) normalised frames; ``input_ids``, ``attention_mask``
    (E, N) for E expressions. Returns (E, T, S, S) float32 (``> 0`` the mask).
    A video model sees the T frames together, ``chunk_size`` expressions a
    forward; an image model sees ``chunk_size`` (frame, expression) pairs a forward.
    """
    E, T = input_ids.shape[0], pixels.shape[0]
    device = pixels.device
    out = torch.empty(E, T, *pixels.shape[-2:], dtype=torch.float32, device=device)
    with torch.inference_mode(), autocast(device, amp):
        if isinstance(model, LAVTVideo):
            for start in range(0, E, chunk_size):
                stop = min(start + chunk_size, E)
                clip = pixels.unsqueeze(0).expand(stop - start, -1, -1, -1, -1)  # (c, T, 3, S, S)
                logits = model(clip, input_ids[start:stop], attention_mask[start:stop])
                # (c, T, 2, S, S): object minus background logit
                out[start:stop] = (logits[:, :, 1] - logits[:, :, 0]).float()
            return out
        pairs = [(e, t) for e in range(E) for t in range(T)]
        for start in range(0, len(pairs), chunk_size):
            chunk = pairs[start : start + chunk_size]
            frames = torch.tensor([t for _, t in chunk], device=device)
            texts = torch.tensor([e for e, _ in chunk], device=device)
            logits = model(pixels[frames], input_ids[texts], attention_mask[texts])  # (c, 2, S, S)
            out[texts, frames] = (logits[:, 1] - logits[:, 0]).float()
    return out


def frame_foreground(
    model: VideoModel, logodds: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """(E, S, S) log-odds of one frame -> (E, H, W) at the frame's ``size`` = (H, W).

    The model's own postprocessing (aligned corners for a video model, as the
    LAVT-RS protocol; the image model's otherwise), applied to the logit pair
    (0, d), whose difference is d: the same resize as on the two logits.
    """
    pair = torch.stack([torch.zeros_like(logodds), logodds], dim=1)  # (E, S, S) -> (E, 2, S, S)
    return model.postprocess(pair, size)  # (E, H, W)


def segment_frames(
    model: VideoModel,
    frames: Iterable[Image.Image],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    img_size: int,
    clip_length: int = 0,
    device: torch.device | str = "cpu",
    amp: torch.dtype | None = None,
    chunk_size: int = 8,
) -> Iterator[torch.Tensor]:
    """Yield each frame's (E, H, W) float32 object log-odds at that frame's size, in order.

    ``frames`` is consumed ``clip_length`` frames at a time (0: all of them as one
    clip, as the authors' protocol does; memory then grows with the video).
    ``input_ids``, ``attention_mask`` (E, N) are the E expressions' tokens.
    """
    check_clip_length(clip_length)
    ids, attention = input_ids.to(device), attention_mask.to(device)
    pending: list[Image.Image] = []

    def run(clip: Sequence[Image.Image]) -> Iterator[torch.Tensor]:
        pixels = torch.stack([image_to_tensor(f, img_size) for f in clip]).to(
            device
        )  # (T, 3, S, S)
        logodds = clip_foreground(model, pixels, ids, attention, amp=amp, chunk_size=chunk_size)
        for t, frame in enumerate(clip):
            yield frame_foreground(model, logodds[:, t], (frame.height, frame.width))

    for frame in frames:
        pending.append(frame)
        if clip_length and len(pending) == clip_length:
            yield from run(pending)
            pending = []
    if pending:
        yield from run(pending)
