"""Bridges to the tools practitioners already use (each needs its own extra).

- :mod:`lavt.integrations.supervision`: predictions -> ``supervision.Detections``
  (``pip install 'lavt[supervision]'``), for its annotators, trackers and metrics.

COCO results files (``lavt predict --coco-results``) need no extra:
:mod:`lavt.predict.coco_results`.
"""
