"""Peak memory and speed of ``lavt predict --video`` as the video grows.

    OMP_NUM_THREADS=1 python scripts/video_memory.py --frames 100 400 1600 --size 320 240
    OMP_NUM_THREADS=1 python scripts/video_memory.py --checkpoint video.pt --img-size 480 \
        --clip-length 36 --frames 72 288

Writes a synthetic MP4 (a disc moving over a gradient) of each length, runs
``lavt predict --video`` on it in a child process (the bundled image model
unless ``--checkpoint``; ``--save-png --overlay-video`` with ``--all-outputs``)
and prints, per length, the child's peak resident set size (``ru_maxrss``),
the wall time (start-up and model loading included) and, from the second length
on, frames a second over the frames added since the first length (start-up
cancels out). Bounded memory shows as a flat peak.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: int, width: int, height: int) -> None:
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60)], -1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            rgb = base.astype(np.uint8)
            cx = (t * 4) % width
            rgb[(y - height // 2) ** 2 + (x - cx) ** 2 < (height // 6) ** 2] = (220, 30, 30)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def run_once(args: argparse.Namespace, frames: int, tmp: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one child run; peaks are per child (a fresh process)."""
    video = tmp / f"v{frames}.mp4"
    write_video(video, frames, *args.size)
    cmd = [sys.executable, "-m", "lavt", "predict", "--video", str(video), "--device", args.device]
    cmd += ["--text", "the red circle", "--output", str(tmp / f"out{frames}")]
    cmd += ["--clip-length", str(args.clip_length)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    if args.img_size:
        cmd += ["--img-size", str(args.img_size)]
    if args.all_outputs:
        cmd += ["--save-png", "--overlay-video"]
    peak = "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    code = f"import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; {peak}"
    probe = [sys.executable, "-c", f"{code}; sys.exit(r)", *cmd]
    start = time.perf_counter()
    done = subprocess.run(probe, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr)
    return int(done.stdout.strip().splitlines()[-1]) / 1024, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 400, 1600])
    parser.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    parser.add_argument("--clip-length", type=int, default=36)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--all-outputs", action="store_true")
    args = parser.parse_args()
    print("frames  peak RSS (MiB)  seconds  frames/s (added frames)")
    first: tuple[int, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            peak, seconds = run_once(args, frames, Path(tmp))
            rate = ""
            if first is not None and seconds > first[1]:
                rate = f"{(frames - first[0]) / (seconds - first[1]):8.1f}"
            first = first or (frames, seconds)
            print(f"{frames:6d}  {peak:14.0f}  {seconds:7.1f}  {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
