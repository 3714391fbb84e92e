"""Tiny referring-video datasets written by the tests (moving discs, palette PNG masks),
and tiny models to evaluate on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lavt.checkpoint import save_checkpoint
from lavt.modeling import build_model, build_video_model

H, W = 40, 48  # frame size (rows, columns)
PALETTE = [0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9)

#: video -> (number of frames, expressions: exp_id -> (text, object id))
VIDEOS = {
    "vid_a": (5, {"0": ("the red disc", 1), "1": ("the green disc on the right", 2)}),
    "vid_b": (4, {"0": ("a red ball moving down", 1)}),
}


def labels(t: int, seed: int) -> np.ndarray:
    """(H, W) uint8: object 1 a disc moving right, object 2 one moving down, at frame t."""
    rows, cols = np.mgrid[0:H, 0:W]
    out = np.zeros((H, W), dtype=np.uint8)
    out[(rows - 14 - seed) ** 2 + (cols - 8 - 5 * t) ** 2 <= 36] = 1
    out[(rows - 6 - 4 * t) ** 2 + (cols - 36) ** 2 <= 25] = 2
    return out


def frame_image(lab: np.ndarray, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 120, (H, W, 3), dtype=np.uint8)
    colours = np.array(PALETTE[:9], dtype=np.uint8).reshape(3, 3)
    pixels[lab > 0] = colours[lab[lab > 0]]
    return Image.fromarray(pixels)


def save_labels(lab: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(lab, mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def write_ytvos(root: Path, split: str = "train", *, masks: bool = True) -> Path:
    """The Refer-YouTube-VOS layout; ``masks`` False: no Annotations/ and no obj_id."""
    videos = {}
    for v, (name, (count, expressions)) in enumerate(VIDEOS.items()):
        frames = [f"{5 * t:05d}" for t in range(count)]
        for t, frame in enumerate(frames):
            lab = labels(t, v)
            path = root / split / "JPEGImages" / name / f"{frame}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame_image(lab, 10 * v + t).save(path, quality=95)
            if masks:
                save_labels(lab, root / split / "Annotations" / name / f"{frame}.png")
        exps = {
            k: {"exp": text, **({"obj_id": str(obj)} if masks else {})}
            for k, (text, obj) in expressions.items()
        }
        videos[name] = {"expressions": exps, "frames": frames}
    meta = root / "meta_expressions" / split / "meta_expressions.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"videos": videos}))
    return root


def write_davis(root: Path) -> Path:
    """The raw DAVIS 2017 layout with two annotators' files; the text files spell the
    second video "motor-bike" (DAVIS: "motorbike"), the second annotator's is Latin-1."""
    names = {"vid_a": "vid_a", "motorbike": "motor-bike"}
    for v, name in enumerate(names):
        for t in range(VIDEOS["vid_a"][0]):
            lab = labels(t, v)
            path = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame_image(lab, 10 * v + t).save(path, quality=95)
            save_labels(lab, root / "Annotations" / "480p" / name / f"{t:05d}.png")
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("vid_a\nmotorbike\n")
    texts = root / "davis_text_annotations"
    texts.mkdir()
    (texts / "Davis17_annot1.txt").write_text(
        'vid_a 1 "the red disc"\nvid_a 2 "a green disc"\nmotor-bike 1 "red one"\n',
        encoding="utf-8",
    )
    (texts / "Davis17_annot2.txt").write_bytes(
        'vid_a 1 "le disque rouge à gauche"\nmotor-bike 2 "the green   one"\n'.encode("latin-1")
    )
    return root


def tiny_video_model(seed: int = 0):
    """A tiny lavt_video reading bert-base-uncased ids (window (8, 3, 3), input 32)."""
    from conftest import tiny_video_config

    config = tiny_video_config()
    torch.manual_seed(seed)
    return balanced(build_video_model(config).eval(), video=True)


def tiny_image_model(seed: int = 0):
    from conftest import tiny_config

    torch.manual_seed(seed)
    return balanced(build_model(tiny_config(img_size=32)).eval(), video=False)


@torch.no_grad()
def balanced(model, *, video: bool):
    """Shift the object logit so that about half the pixels of a frame are the object:
    a random model's masks are then neither empty nor full, and J, F not trivial."""
    from lavt.data.transforms import image_to_tensor

    pixels = image_to_tensor(frame_image(labels(0, 0), 0), 32)[None]  # (1, 3, S, S)
    ids = torch.tensor([[101, 1996, 2417, 5645, 102]])
    attention = torch.ones_like(ids)
    logits = model(pixels[:, None] if video else pixels, ids, attention)  # (1, [T,] 2, S, S)
    logodds = logits.select(-3, 1) - logits.select(-3, 0)
    model.classifier.conv1_1.bias[1] -= logodds.median()
    return model


def save_models(folder: Path) -> dict[str, Path]:
    paths = {"video": folder / "video.pt", "image": folder / "image.pt"}
    save_checkpoint(paths["video"], tiny_video_model())
    save_checkpoint(paths["image"], tiny_image_model())
    return paths
