"""The user-facing predictor and ``lavt predict``'s batch writer.

- :class:`Predictor` (``predictor.py``): image + expressions -> masks at the image's size;
  a video (``video.py``, read by :mod:`lavt.videoio`) -> masks frame by frame
  (:meth:`Predictor.predict_video`), written to a folder by ``video_output.py``;
- :func:`predict_to_folder` (``batch.py``): many images, each checked up front and
  decoded one at a time, written as masks, overlays and ``predictions.jsonl``;
- :func:`predict_manifest` (``bulk.py``): bulk inference over a JSON-lines manifest
  (``lavt predict --manifest``; docs/bulk.md).
"""

from lavt.predict.batch import predict_to_folder
from lavt.predict.bulk import predict_manifest
from lavt.predict.predictor import Predictor
from lavt.predict.results import FramePrediction, Prediction, predictions_from_logits

__all__ = [
    "FramePrediction",
    "Prediction",
    "Predictor",
    "predict_manifest",
    "predict_to_folder",
    "predictions_from_logits",
]
