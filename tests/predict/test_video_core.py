"""The video inference core (lavt.predict.video): clips, LAVT-RS protocol, per-frame baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import lavt
from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError
from lavt.predict.video import check_clip_length, clip_foreground, segment_frames

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "golden_video"
CASE = GOLDEN / "lavt_video_w877.pth"


def frames(count: int, size=(50, 38), seed=0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(count)]


def tokens(count: int, seed=1, vocab=900) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (count, 6), generator=gen)
    return ids, torch.ones_like(ids)


def test_check_clip_length():
    for length in (0, 1, 36):
        check_clip_length(length)
    with pytest.raises(InputError, match="clip_length -1: must be 0"):
        check_clip_length(-1)


@pytest.fixture(scope="module")
def video_model():
    if not CASE.is_file():
        pytest.skip("golden_video not beside the checkout")
    return lavt.load_model(CASE).eval()


def test_video_model_follows_the_authors_protocol(video_model):
    """One clip: resize to the model size, the clip through the model, logits resized with
    aligned corners to the frame size, argmax: what test_ytvos.py does."""
    clip = frames(5)
    ids, attention = tokens(2)
    got = list(segment_frames(video_model, clip, ids, attention, img_size=64))
    assert len(got) == 5 and got[0].shape == (2, 50, 38)
    pixels = torch.stack([image_to_tensor(f, 64) for f in clip])  # (T, 3, S, S)
    with torch.inference_mode():
        for e in range(2):
            logits = video_model(pixels[None], ids[e : e + 1], attention[e : e + 1])[
                0
            ]  # (T, 2, S, S)
            full = F.interpolate(logits, size=(50, 38), mode="bilinear", align_corners=True)
            want = full.argmax(1)  # (T, H, W)
            for t in range(5):
                agree = ((got[t][e] > 0).long() == want[t]).float().mean()
                assert agree > 0.999
                diff = full[t, 1] - full[t, 0]
                assert torch.allclose(got[t][e], diff, atol=1e-4 * diff.abs().max())


def test_clip_length_splits_the_video_into_independent_clips(video_model):
    clip = frames(7)
    ids, attention = tokens(1)
    got = list(segment_frames(video_model, clip, ids, attention, img_size=64, clip_length=3))
    assert len(got) == 7
    pixels = torch.stack([image_to_tensor(f, 64) for f in clip])
    head = clip_foreground(video_model, pixels[3:6], ids, attention)  # the second clip alone
    tail = clip_foreground(video_model, pixels[6:], ids, attention)
    whole = clip_foreground(video_model, pixels, ids, attention)
    torch.testing.assert_close(
        got[4],
        video_model.postprocess(
            torch.stack([torch.zeros_like(head[:, 1]), head[:, 1]], 1), (50, 38)
        ),
    )
    torch.testing.assert_close(
        got[6][0],
        video_model.postprocess(
            torch.stack([torch.zeros_like(tail[:, 0]), tail[:, 0]], 1), (50, 38)
        )[0],
    )
    assert not torch.allclose(head[:, 1], whole[:, 4])  # frames see their clip: clips differ


def test_image_model_runs_frame_by_frame():
    model = lavt.Predictor.from_checkpoint(device="cpu").model
    clip = frames(3, size=(40, 30))
    ids, attention = tokens(2, vocab=len(model.vocab))
    size = model.config.img_size
    got = list(segment_frames(model, clip, ids, attention, img_size=size, chunk_size=4))
    with torch.inference_mode():
        for t, frame in enumerate(clip):
            pixels = image_to_tensor(frame, size)[None].expand(2, -1, -1, -1)
            logits = model(pixels, ids, attention)
            want = model.postprocess(logits, (40, 30))
            torch.testing.assert_close(got[t], want, atol=1e-4, rtol=1e-4)
