"""Evaluation with the published protocol: metrics, the loop, the driver, overlays.

- :func:`evaluate` (``loop.py``): one model over one loader, integer sums
  merged across processes -> :class:`EvalResult`;
- :func:`run_evaluation` and :func:`evaluate_splits` (``driver.py``): dataset
  -> loader -> evaluate (-> report files), shared by ``lavt evaluate``,
  training-time validation and the benchmark;
- :class:`SegmentationMetrics`, :func:`format_table` (``metrics.py``);
- J, F and J&F of the DAVIS 2017 evaluation, :class:`VideoMetrics` (``video_metrics.py``);
- the referring-video protocols behind ``lavt evaluate --video-protocol``: Refer-YouTube-VOS
  and Ref-DAVIS17 (``video_eval.py``, the submission zip ``submission.py``), A2D-Sentences
  (``a2d_eval.py``);
- overlays for people (``overlays.py``) and the worst-K overlays (``worst.py``).
"""

from lavt.evaluation.driver import EvalSettings, evaluate_splits, run_evaluation
from lavt.evaluation.gres_metrics import GresMetrics, format_gres_table
from lavt.evaluation.loop import (
    EvalResult,
    GresSettings,
    ShardSampler,
    evaluate,
    make_eval_loader,
)
from lavt.evaluation.metrics import SegmentationMetrics, format_table, intersection_union
from lavt.evaluation.video_metrics import VideoMetrics

__all__ = [
    "EvalResult",
    "EvalSettings",
    "GresMetrics",
    "GresSettings",
    "SegmentationMetrics",
    "ShardSampler",
    "VideoMetrics",
    "evaluate",
    "evaluate_splits",
    "format_gres_table",
    "format_table",
    "intersection_union",
    "make_eval_loader",
    "run_evaluation",
]
