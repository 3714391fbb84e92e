"""``lavt`` predictions as ``supervision.Detections`` (Roboflow's supervision).

::

    import supervision as sv
    from lavt.integrations.supervision import to_detections

    predictions = predictor.predict(image, ["the red circle", "the blue square"])
    detections = to_detections(predictions)
    labels = list(detections.data["text"])
    scene = sv.MaskAnnotator().annotate(np.array(picture), detections)
    scene = sv.LabelAnnotator().annotate(scene, detections, labels=labels)

One row per expression whose mask is not empty: ``mask`` (N, H, W) bool, ``xyxy`` the
masks' boxes (``supervision.mask_to_xyxy``: supervision's own convention, max corner
inclusive), ``confidence`` the mean foreground probability over the mask,
``class_id`` the expression's position in ``predictions`` (so rows map back after
empty ones are dropped, and annotators colour by expression), ``data["text"]`` and
``data["found"]``.

Empty masks (the expression names nothing in the image, or the model found nothing)
are dropped by default: a detection without pixels has no box, and supervision's
annotators and metrics expect every row to be an object. ``keep_empty=True`` keeps
them as rows with an all-false mask, box ``[0, 0, 0, 0]``, confidence 0 and
``data["found"]`` False, so that row ``i`` is ``predictions[i]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lavt.errors import InputError
from lavt.predict.predictor import Prediction


def _supervision() -> Any:
    try:
        import supervision
    except ImportError:
        raise InputError("supervision is not installed (pip install 'lavt[supervision]')") from None
    return supervision


def to_detections(predictions: Sequence[Prediction], *, keep_empty: bool = False):
    """``predictions`` of one image (:meth:`lavt.Predictor.predict`) -> ``sv.Detections``.

    Raises :class:`InputError` when the masks are not all of one size (one image).
    """
    sv = _supervision()
    predictions = list(predictions)
    shapes = {p.mask.shape for p in predictions}
    if len(shapes) > 1:
        raise InputError(
            f"predictions: masks of different sizes {sorted(shapes)}; pass one image's",
            param="predictions",
        )
    rows = [k for k, p in enumerate(predictions) if keep_empty or p.mask.any()]
    if not rows:
        return sv.Detections.empty()
    masks = np.stack([predictions[k].mask.astype(bool) for k in rows])  # (N, H, W)
    xyxy = np.zeros((len(rows), 4), dtype=np.float32)
    filled = masks.reshape(len(rows), -1).any(axis=1)  # (N,)
    if filled.any():
        xyxy[filled] = sv.mask_to_xyxy(masks[filled]).astype(np.float32)
    confidence = np.array(
        [predictions[k].mean_foreground_probability if filled[i] else 0.0
         for i, k in enumerate(rows)],
        dtype=np.float32,
    )  # fmt: skip
    return sv.Detections(
        xyxy=xyxy,
        mask=masks,
        confidence=confidence,
        class_id=np.array(rows, dtype=int),
        data={
            "text": np.array([predictions[k].text for k in rows]),
            "found": np.array(
                [bool(predictions[k].found) and bool(f) for k, f in zip(rows, filled, strict=True)]
            ),
        },
    )
