"""Reading and writing videos, one frame at a time (beside :mod:`lavt.imageio`).

- :func:`open_video`: a video file (decoded with PyAV, which ships its own FFmpeg;
  ``pip install 'lavt[video]'``) or a folder of ``.jpg``/``.jpeg``/``.png`` frames
  (sorted by name in natural order: ``2.jpg`` before ``10.jpg``). Everything that
  can be checked without decoding the whole video is checked when it is opened
  (the file opens and its first frame decodes; a folder's frames are images of
  one size, by their headers); :meth:`Video.frames` then decodes one frame at a
  time, so memory does not grow with the video's length.
- :func:`write_video`: an MP4 written frame by frame with PyAV (H.264 where the
  FFmpeg build has an encoder for it, else MPEG-4 part 2), atomically.

A file's rotation tag is not applied: frames are the pixels as stored. Every
failure is an :class:`InputError` whose one-line message names the path (and
the frame when one frame is at fault).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from lavt.errors import InputError
from lavt.imageio import check_image, load_image
from lavt.runtime import atomic_path, check_readable_file

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
#: encoders tried in order for :func:`write_video`
ENCODERS = ("libx264", "libopenh264", "mpeg4")


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame."""

    index: int  # 0-based position in the video
    image: Image.Image  # RGB at the frame's own size
    name: str | None = None  # the file name, for a folder of frames
    time: float | None = None  # seconds from the start, for a video file


def _pyav():
    try:
        import av
    except ImportError:
        raise InputError(
            "video: reading and writing video files needs PyAV: pip install 'lavt[video]'",
            param="video",
        ) from None
    return av


def natural_key(name: str) -> list[str | int]:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class Video:
    """An opened, checked video; iterate :meth:`frames` (or the object) to decode it.

    Attributes: ``path``; ``width``, ``height`` (every frame has this size);
    ``fps`` (frames per second, None when unknown: always for a folder);
    ``num_frames`` (None when the file does not say; exact for a folder);
    ``names`` (a folder's frame file names in order, else None).
    """

    def __init__(
        self,
        path: Path,
        *,
        size: tuple[int, int],
        fps: float | None,
        num_frames: int | None,
        names: list[str] | None = None,
    ) -> None:
        self.path = path
        self.width, self.height = size
        self.fps = fps
        self.num_frames = num_frames
        self.names = names

    @property
    def is_folder(self) -> bool:
        return self.names is not None

    def __iter__(self) -> Iterator[VideoFrame]:
        return self.frames()

    def frames(self) -> Iterator[VideoFrame]:
        """Decode the frames in order, one at a time (each call starts from the first)."""
        source = self._folder_frames() if self.names is not None else self._file_frames()
        count = 0
        for frame in source:
            if frame.image.size != (self.width, self.height):
                where = frame.name or f"frame {frame.index}"
                raise InputError(
                    f"{self.path}: {where} is {frame.image.width}x{frame.image.height}, "
                    f"the first frame {self.width}x{self.height} (frames must share one size)"
                )
            count += 1
            yield frame
        if count == 0:
            raise InputError(f"{self.path}: no video frames decoded")

    def _folder_frames(self) -> Iterator[VideoFrame]:
        for index, name in enumerate(self.names or []):
            yield VideoFrame(index, load_image(self.path / name), name=name)

    def _file_frames(self) -> Iterator[VideoFrame]:
        av = _pyav()
        with _decoding(self.path, av) as progress, av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                progress[0] = index + 1
                time = frame.time if frame.time is not None else _time(index, self.fps)
                yield VideoFrame(index, frame.to_image().convert("RGB"), time=time)


def _time(index: int, fps: float | None) -> float | None:
    return None if not fps else index / fps


@contextlib.contextmanager
def _decoding(path: Path, av) -> Iterator[list[int]]:
    """PyAV's failures on ``path`` as one-line :class:`InputError` messages.

    Yields a one-item list the decoder keeps at the number of frames decoded so far,
    so a failure names the frame it happened at.
    """
    progress = [0]
    try:
        yield progress
    except (av.FFmpegError, OSError, ValueError, IndexError) as err:
        text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
        text = text.splitlines()[0]
        where = f" at frame {progress[0]}" if progress[0] else ""
        raise InputError(f"{path}: not a readable video{where} ({text[:160]})") from None


def _open_file(path: Path) -> Video:
    av = _pyav()
    check_readable_file(path, "video", a_what="a video file")
    with _decoding(path, av), av.open(str(path)) as container:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        first = next(container.decode(stream), None)
        if first is None:
            raise InputError(f"{path}: no video frames decoded")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        count = int(stream.frames) or None
        return Video(path, size=(first.width, first.height), fps=fps, num_frames=count)


def _open_folder(path: Path) -> Video:
    names = sorted(
        (
            p.name
            for p in path.iterdir()
            if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=natural_key,
    )
    if not names:
        raise InputError(f"{path}: no frames (.jpg, .jpeg or .png files) in the folder")
    stems: dict[str, str] = {}
    for name in names:
        stem = Path(name).stem
        if stem in stems:
            raise InputError(f"{path}: two frames named {stem} ({stems[stem]}, {name})")
        stems[stem] = name
    stored = check_image(path / names[0])
    for name in names[1:]:  # headers only: a folder is checked before anything else is decoded
        other = check_image(path / name)
        if other != stored:
            raise InputError(
                f"{path / name}: {other[0]}x{other[1]}, the first frame {stored[0]}x{stored[1]} "
                "(frames must share one size)"
            )
    size = load_image(path / names[0]).size  # as decoded: EXIF orientation applied
    return Video(path, size=size, fps=None, num_frames=len(names), names=names)


def open_video(path: str | os.PathLike) -> Video:
    """A video file or a folder of frames, checked; decode it with :meth:`Video.frames`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: video not found")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"{path}: folder is not readable (permission denied)")
        return _open_folder(path)
    return _open_file(path)


@contextlib.contextmanager
def write_video(path: str | os.PathLike, *, fps: float) -> Iterator[Callable[[Image.Image], None]]:
    """Yield ``add(frame)``; the frames become an MP4 at ``path`` when the block ends.

    Frames are RGB images of one size (padded with white to even sides, as the
    YUV 4:2:0 encoding needs). The file appears only when complete
    (:func:`lavt.runtime.atomic_path`); nothing is left on an error.
    """
    av = _pyav()
    if not fps > 0:
        raise InputError(f"fps {fps}: must be positive", param="fps")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        size: tuple[int, int] | None = None

        def add(frame: Image.Image) -> None:
            nonlocal stream, size
            if stream is None:
                size = (frame.width + frame.width % 2, frame.height + frame.height % 2)
                stream = _video_stream(av, container, rate, size)
            if (frame.width + frame.width % 2, frame.height + frame.height % 2) != size:
                raise InputError(f"{path}: frames of one video must share one size")
            canvas = np.full((size[1], size[0], 3), 255, dtype=np.uint8)  # (H, W, 3)
            canvas[: frame.height, : frame.width] = np.asarray(frame.convert("RGB"))
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)

        yield add
        if stream is not None:
            for packet in stream.encode():  # flush the encoder
                container.mux(packet)


def _video_stream(av, container, rate: Fraction, size: tuple[int, int]):
    for name in ENCODERS:
        if name not in av.codecs_available:
            continue
        try:
            stream = container.add_stream(name, rate=rate)
        except (av.FFmpegError, ValueError):
            continue
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        return stream
    raise InputError("video: this FFmpeg build has no H.264 or MPEG-4 encoder", param="video")
