"""Readers of the referring-video datasets (docs/video.md, "Datasets and protocols").

One module per format, each parsing and checking its files and returning the
records of :mod:`lavt.data.video.records`; none imports a sibling:

- :mod:`~lavt.data.video.ytvos`: the Refer-YouTube-VOS layout (also what
  ``lavt synth --video`` writes, and Ref-DAVIS17 converted to it);
- :mod:`~lavt.data.video.davis`: the raw DAVIS 2017 layout with the Ref-DAVIS17
  text annotations;
- :mod:`~lavt.data.video.a2d`: A2D-Sentences (``h5py`` reads its masks).
"""

from lavt.data.video.records import VideoExpression, VideoSplit, read_label_png

__all__ = ["VideoExpression", "VideoSplit", "read_label_png"]
