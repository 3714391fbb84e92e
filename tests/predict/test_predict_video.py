"""Video inference end to end: lavt.videoio, Predictor.predict_video, lavt predict --video.

A tiny random ``lavt_video`` with the bundled model's vocabulary runs everywhere;
the golden LAVT-RS case (../shared/reference/golden_video) runs where it is present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import lavt
from conftest import tiny_video_config
from lavt.checkpoint import save_checkpoint
from lavt.cli import main
from lavt.errors import InputError
from lavt.modeling import build_video_model
from lavt.predict.video import segment_frames
from lavt.videoio import natural_key, open_video

GOLDEN_VIDEO = Path(
    os.environ.get(
        "LAVT_GOLDEN_VIDEO",
        Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "golden_video",
    )
)
TEXTS = ["the red circle", "the blue square"]


def disc_frames(count: int, size=(48, 64)) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames: a red disc moving right past a still blue square."""
    H, W = size
    yy, xx = np.mgrid[:H, :W]
    frames = []
    for t in range(count):
        rgb = np.full((H, W, 3), 30, np.uint8)
        rgb[H // 2 :, W - 16 : W - 4] = (40, 40, 220)
        rgb[(yy - H // 3) ** 2 + (xx - 8 - 3 * t) ** 2 < 64] = (220, 40, 40)
        frames.append(rgb)
    return frames


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode(path: Path) -> list[np.ndarray]:
    """A video's frames as (H, W, 3) uint8, decoded here with PyAV directly."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    """Frames as ``f<t>.png``: f10 after f9 only in natural order."""
    folder.mkdir()
    for t, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"f{t}.png")
    return folder


@pytest.fixture(scope="module")
def vocab() -> list[str]:
    return list(lavt.Predictor.from_checkpoint(device="cpu").model.vocab)


@pytest.fixture(scope="module")
def tiny_video(vocab):
    """A tiny random lavt_video (temporal window 8) that reads the bundled vocabulary."""
    config = tiny_video_config(vocab_size=len(vocab))
    torch.manual_seed(0)
    return build_video_model(config, vocab=vocab).eval()


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_video, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "video.pt"
    save_checkpoint(path, tiny_video)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """An mp4 of 10 frames, and a folder of its frames as PyAV decodes them (the same pixels)."""
    root = tmp_path_factory.mktemp("clips")
    mp4 = write_mp4(root / "disc.mp4", disc_frames(10))
    return mp4, write_folder(root / "frames", decode(mp4))


def masks(results) -> np.ndarray:
    """(T, E, H, W) bool from predict_video's results."""
    return np.stack([np.stack([p.mask for p in r.predictions]) for r in results])


def test_reading_a_file_and_a_folder(clips, tmp_path):
    mp4, folder = clips
    video = open_video(mp4)
    assert (video.width, video.height, video.fps, video.num_frames) == (64, 48, 10.0, 10)
    frames = list(video.frames())
    assert [f.index for f in frames] == list(range(10)) and frames[3].time == pytest.approx(0.3)
    assert np.array_equal(np.asarray(frames[4].image), decode(mp4)[4])
    listed = open_video(folder)
    assert listed.num_frames == 10 and listed.fps is None and listed.names[-1] == "f9.png"
    assert listed.names[:3] == ["f0.png", "f1.png", "f2.png"]  # natural order: f10 not after f1
    names = ["f10.png", "f9.png", "F2.jpg"]
    assert sorted(names, key=natural_key) == ["F2.jpg", "f9.png", "f10.png"]
    assert [f.name for f in listed][9] == "f9.png"
    turned = tmp_path / "turned"  # JPEGs stored 64x48 with an EXIF orientation of 90 degrees
    turned.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for t, rgb in enumerate(disc_frames(3)):
        Image.fromarray(rgb).save(turned / f"{t}.jpg", exif=exif)
    video = open_video(turned)
    assert (video.width, video.height) == (48, 64)
    assert [f.image.size for f in video] == [(48, 64)] * 3


def test_file_and_folder_give_the_same_masks_as_the_core(clips, tiny_video):
    mp4, folder = clips
    predictor = lavt.Predictor(tiny_video, device="cpu")
    from_file = list(predictor.predict_video(mp4, TEXTS, clip_length=4))
    from_folder = list(predictor.predict_video(folder, TEXTS, clip_length=4))
    assert len(from_file) == len(from_folder) == 10
    assert np.array_equal(masks(from_file), masks(from_folder))
    assert from_folder[7].frame.name == "f7.png" and from_file[7].frame.time == pytest.approx(0.7)
    ids, attention = predictor.tokenizer(TEXTS)
    frames = [Image.fromarray(rgb) for rgb in decode(mp4)]
    core = segment_frames(tiny_video, frames, ids, attention, img_size=32, clip_length=4)
    want = np.stack([(logodds > 0).numpy() for logodds in core])  # (T, E, H, W)
    assert want.any() and np.array_equal(masks(from_file), want)
    first = from_file[0].predictions[0]
    assert first.found == bool(first.mask.any()) and 0.0 <= first.mean_foreground_probability <= 1


def test_clip_length_is_honoured(clips, tiny_video):
    predictor = lavt.Predictor(tiny_video, device="cpu")
    seen: list[int] = []
    hook = predictor.model.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        for length, clips_of in ((4, [4, 4, 2]), (0, [10]), (3, [3, 3, 3, 1])):
            seen.clear()
            assert len(list(predictor.predict_video(clips[0], TEXTS[:1], clip_length=length))) == 10
            assert seen == clips_of
    finally:
        hook.remove()
    with pytest.raises(InputError, match="clip_length"):
        predictor.predict_video(clips[0], TEXTS, clip_length=-1)  # refused before iterating


def test_an_image_model_runs_frame_by_frame(clips):
    predictor = lavt.Predictor.from_checkpoint(device="cpu", chunk_size=4)
    pulled = []

    def frames():
        for t, rgb in enumerate(decode(clips[0])):
            pulled.append(t)
            yield rgb

    ahead = [len(pulled) - r.index for r in predictor.predict_video(frames(), TEXTS, clip_length=0)]
    assert max(ahead) == 4  # clip_length 0: chunk_size frames decoded ahead, not the whole video
    results = list(predictor.predict_video(clips[1], TEXTS))
    for result in results[::3]:
        single = predictor.predict(result.frame.image, TEXTS)
        for got, want in zip(result.predictions, single, strict=True):
            assert (got.mask == want.mask).mean() > 0.999
    assert results[5].predictions[0].mask.any()  # the bundled model finds the red circle


def test_memory_is_bounded_in_the_length_of_the_video(tmp_path, tiny_video):
    """300 frames decoded from a file: never more than a clip's worth alive at once."""
    mp4 = write_mp4(tmp_path / "long.mp4", disc_frames(300, size=(16, 24)))
    predictor = lavt.Predictor(tiny_video, device="cpu")
    video = open_video(mp4)
    alive, peak, pulled = [0], [0], [0]

    def released() -> None:
        alive[0] -= 1

    def counted():
        for frame in video.frames():
            alive[0] += 1
            pulled[0] += 1
            peak[0] = max(peak[0], alive[0])
            weakref.finalize(frame.image, released)
            yield frame.image
            del frame

    count = 0
    for result in predictor.predict_video(counted(), TEXTS[:1], clip_length=5):
        assert pulled[0] - result.index <= 5  # decoded lazily: at most a clip ahead
        count += 1
        del result
    assert count == 300 and peak[0] <= 7


def test_predict_refuses_a_video_model_in_one_line(tiny_video, tiny_checkpoint, tmp_path, capsys):
    predictor = lavt.Predictor(tiny_video, device="cpu")
    with pytest.raises(InputError, match="predict_video"):
        predictor.predict(Image.new("RGB", (32, 32)), "the red circle")
    from lavt.serve.adapter import ModelAdapter

    with pytest.raises(InputError, match="lavt_video"):
        ModelAdapter(tiny_video, device=torch.device("cpu"))
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(tiny_checkpoint), "--image", str(image), "--text", "a"]
    assert main([*args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lavt_video" in err and "--video" in err and err.count("\n") == 1
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(json.dumps({"id": "a", "image": "x.png", "text": "a"}) + "\n")
    args = ["predict", "--checkpoint", str(tiny_checkpoint), "--manifest", str(manifest)]
    assert main([*args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lavt_video" in err and err.count("\n") == 1
    assert not out.exists()


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_folder(out: Path, frames: int, texts: list[str], *, overlay: bool) -> list[dict]:
    """predictions.jsonl, every mask PNG equal to its RLE, overlay.mp4 with a frame per frame."""
    lines = read_lines(out / "predictions.jsonl")
    assert len(lines) == frames * len(texts)
    order = [(t, text) for t in range(frames) for text in texts]
    assert [(r["frame"], r["text"]) for r in lines] == order
    for record in lines:
        png = np.asarray(Image.open(out / record["mask"])) > 127
        assert np.array_equal(png, mask_utils.decode(record["rle"]).astype(bool))
        assert record["area"] == int(png.sum()) and record["found"] == bool(png.any())
        assert (record["width"], record["height"]) == (64, 48)
    assert (out / "overlay.mp4").exists() == overlay
    if overlay:
        assert len(decode(out / "overlay.mp4")) == frames
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left
    return lines


def test_cli_on_a_file_and_a_folder(clips, tiny_checkpoint, tmp_path, capsys):
    mp4, folder = clips
    common = ["predict", "--checkpoint", str(tiny_checkpoint), "--text", *TEXTS, "--device", "cpu"]
    flags = ["--clip-length", "4", "--save-png", "--overlay-video"]
    assert main([*common, "--video", str(mp4), "--output", str(tmp_path / "a"), *flags]) == 0
    summary = capsys.readouterr().out
    assert summary.count("\n") == 1 and "10 frames x 2 expression(s)" in summary
    assert "clips of 4 frames" in summary
    from_file = check_folder(tmp_path / "a", 10, TEXTS, overlay=True)
    assert from_file[2]["time"] == pytest.approx(0.1) and "frame_name" not in from_file[2]
    assert from_file[2]["mask"].endswith("/000001.png")
    assert main([*common, "--video", str(folder), "--output", str(tmp_path / "b"), "--save-png",
                 "--clip-length", "4"]) == 0  # fmt: skip
    from_folder = check_folder(tmp_path / "b", 10, TEXTS, overlay=False)
    assert from_folder[2]["frame_name"] == "f1.png" and from_folder[2]["mask"].endswith("/f1.png")
    assert [r["rle"] for r in from_file] == [r["rle"] for r in from_folder]
    # a second run into the same folder replaces the first one's entries
    assert main([*common[:4], TEXTS[0], "--video", str(mp4), "--output",
                 str(tmp_path / "a"), "--device", "cpu"]) == 0  # fmt: skip
    assert len(read_lines(tmp_path / "a" / "predictions.jsonl")) == 10
    assert not (tmp_path / "a" / "masks").exists() and not (tmp_path / "a" / "overlay.mp4").exists()


def test_cli_with_the_bundled_image_model(clips, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", "--video", str(clips[0]), "--text", TEXTS[0], "--output", str(out)]
    assert main([*args, "--overlay-video", "--device", "cpu"]) == 0
    assert "frame by frame" in capsys.readouterr().out
    lines = read_lines(out / "predictions.jsonl")
    assert len(lines) == 10 and sum(r["found"] for r in lines) >= 8
    assert len(decode(out / "overlay.mp4")) == 10


def test_cli_with_a_golden_lavt_rs_checkpoint(clips, vocab, tmp_path, capsys):
    """The authors' protocol end to end: the golden case's weights, the whole video as one clip,
    the masks those of the inference core on the same frames."""
    golden = GOLDEN_VIDEO / "lavt_video_w877.pth"
    if not golden.is_file():
        pytest.skip(f"no golden video files in {GOLDEN_VIDEO}")
    model = lavt.load_model(golden).eval()
    model.vocab = vocab  # the golden text encoder has 1000 embeddings: read the small vocabulary
    save_checkpoint(tmp_path / "golden.pt", model)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(tmp_path / "golden.pt"), "--video", str(clips[0])]
    args += ["--text", *TEXTS, "--output", str(out), "--img-size", "64", "--clip-length", "0"]
    assert main([*args, "--device", "cpu", "--dtype", "float32"]) == 0
    assert "as one clip" in capsys.readouterr().out
    lines = read_lines(out / "predictions.jsonl")
    predictor = lavt.Predictor(model, device="cpu")
    ids, attention = predictor.tokenizer(TEXTS)
    frames = [Image.fromarray(rgb) for rgb in decode(clips[0])]
    core = list(segment_frames(model, frames, ids, attention, img_size=64))
    for record in lines:
        want = (core[record["frame"]][record["text_index"]] > 0).numpy()
        assert np.array_equal(mask_utils.decode(record["rle"]).astype(bool), want)


def _bad_input(kind: str, tmp_path: Path, clips) -> tuple[list[str], str]:
    """(the arguments after ``--text T --output DIR``, a string the error line must hold)."""
    mp4, folder = clips
    bad = tmp_path / "bad"
    if kind == "missing":
        return ["--video", str(bad)], f"{bad}: video not found"
    if kind == "not a video":
        (bad := tmp_path / "bad.mp4").write_text("hello")
        return ["--video", str(bad)], f"{bad}: not a readable video"
    if kind == "truncated":
        (bad := tmp_path / "bad.mp4").write_bytes(mp4.read_bytes()[:300])
        return ["--video", str(bad)], str(bad)
    if kind == "empty file":
        (bad := tmp_path / "bad.mp4").touch()
        return ["--video", str(bad)], f"{bad}: video file is empty"
    if kind == "empty folder":
        bad.mkdir()
        (bad / "notes.txt").write_text("no frames")
        return ["--video", str(bad)], f"{bad}: no frames"
    if kind == "another size":
        write_folder(bad, disc_frames(3))
        Image.new("RGB", (30, 20)).save(bad / "f1.png")
        return ["--video", str(bad)], f"{bad / 'f1.png'}: 30x20, the first frame 64x48"
    if kind == "not an image":
        write_folder(bad, disc_frames(3))
        (bad / "f2.png").write_text("hello")
        return ["--video", str(bad)], f"{bad / 'f2.png'}: not an image"
    if kind == "clip length":
        return ["--video", str(mp4), "--clip-length", "-2"], "--clip-length -2: must be 0"
    if kind == "coco results":
        return ["--video", str(mp4), "--coco-results", str(tmp_path / "c.json")], "--coco-results"
    if kind == "area threshold":
        return ["--video", str(mp4), "--area-threshold", "5"], "--area-threshold"
    raise AssertionError(kind)


BAD = ["missing", "not a video", "truncated", "empty file", "empty folder", "another size",
       "not an image", "clip length", "coco results", "area threshold"]  # fmt: skip


@pytest.mark.parametrize("kind", BAD)
def test_bad_inputs_are_one_line_and_write_nothing(kind, clips, tmp_path, capsys):
    args, expected = _bad_input(kind, tmp_path, clips)
    out = tmp_path / "out"
    assert main(["predict", "--text", "the red circle", "--output", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert err.startswith("lavt predict: error:") and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


def test_a_frame_failing_half_way_leaves_the_folder_as_it_was(clips, tiny_checkpoint, tmp_path):
    """A JPEG cut short past its header: found while decoding, after clips were written."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, rgb in enumerate(disc_frames(6)):
        Image.fromarray(rgb).save(folder / f"{t:05d}.jpg")
    whole = (folder / "00004.jpg").read_bytes()
    (folder / "00004.jpg").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    common = ["predict", "--checkpoint", str(tiny_checkpoint), "--text", "the red circle"]
    common += ["--output", str(out), "--device", "cpu", "--save-png"]
    assert main([*common, "--video", str(clips[0])]) == 0  # an earlier run's results
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match=r"00004\.jpg"):
        from lavt.predict.video_output import predict_video_to_folder

        predict_video_to_folder(
            lavt.Predictor.from_checkpoint(tiny_checkpoint, device="cpu"),
            open_video(folder),
            ["the red circle"],
            out,
            clip_length=2,
            save_png=True,
        )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["masks", "predictions.jsonl"]


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(clips, tiny_checkpoint, tmp_path):
    """SIGKILL leaves ``.lavt-video-<pid>-*.tmp`` behind; the next run removes it when its
    process is gone, and leaves a live run's alone."""
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".lavt-video-{dead.pid}-abc.tmp"
    (stale / "masks").mkdir(parents=True)
    (stale / "predictions.jsonl").write_text("{}\n")
    live = out / f".lavt-video-{os.getppid()}-xyz.tmp"  # a process that is alive
    live.mkdir()
    common = ["predict", "--checkpoint", str(tiny_checkpoint), "--text", "the red circle"]
    assert main([*common, "--output", str(out), "--device", "cpu", "--video", str(clips[0])]) == 0
    assert not stale.exists() and live.is_dir()
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "predictions.jsonl"])


def test_a_folder_of_image_predictions_is_refused(clips, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").write_text(json.dumps({"image": "x.png", "mask": "m.png"}) + "\n")
    args = ["predict", "--video", str(clips[0]), "--text", "a", "--output", str(out)]
    assert main(args) == 2
    assert "--output" in capsys.readouterr().err and len(list(out.iterdir())) == 1
