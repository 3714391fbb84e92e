"""Metrics against hand-computed numbers; exact merging of shards."""

from __future__ import annotations

import pytest
import torch

from lavt.evaluation.metrics import SegmentationMetrics, format_table, intersection_union


def _masks(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "#" for c in row] for row in rows])


def test_intersection_union():
    pred = torch.stack([_masks(["##..", "##.."]), _masks(["....", "...."])])
    gt = torch.stack([_masks(["#...", "#..."]), _masks(["....", "...."])])
    inter, union = intersection_union(pred, gt)
    assert inter.tolist() == [2, 0] and union.tolist() == [4, 0]
    assert inter.dtype == torch.int64


def test_hand_computed_metrics():
    # IoUs: 2/4 = 0.5, 6/10 = 0.6, 0/0 -> 0, 9/10 = 0.9, 7/10 = 0.7
    inter = torch.tensor([2, 6, 0, 9, 7])
    union = torch.tensor([4, 10, 0, 10, 10])
    metrics = SegmentationMetrics()
    iou = metrics.update(inter, union)
    assert iou.tolist() == pytest.approx([0.5, 0.6, 0.0, 0.9, 0.7])
    s = metrics.summary()
    assert s["precision@0.5"] == pytest.approx(80.0)  # >= is inclusive
    assert s["precision@0.6"] == pytest.approx(60.0)
    assert s["precision@0.7"] == pytest.approx(40.0)
    assert s["precision@0.8"] == pytest.approx(20.0)
    assert s["precision@0.9"] == pytest.approx(20.0)
    assert s["overall_iou"] == pytest.approx(100 * 24 / 34)
    assert s["mean_iou"] == pytest.approx(100 * 2.7 / 5)
    assert metrics.num_expressions == 5 and metrics.cum_inter == 24 and metrics.cum_union == 34


def test_halves_merge_into_the_whole():
    g = torch.Generator().manual_seed(0)
    union = torch.randint(0, 500, (101,), generator=g)
    inter = (union.float() * torch.rand(101, generator=g)).long()
    whole = SegmentationMetrics()
    whole.update(inter, union)
    first, second = SegmentationMetrics(), SegmentationMetrics()
    first.update(inter[:37], union[:37])
    second.update(inter[37:], union[37:])
    assert first.merge(second) == whole
    assert second.merge(first) == whole
    assert first.merge(second).summary() == whole.summary()


def test_table_format():
    metrics = SegmentationMetrics()
    metrics.update(torch.tensor([1]), torch.tensor([3]))
    table = format_table({"val": metrics.summary()})
    assert table.splitlines()[0].startswith("| Split | P@0.5 |")
    assert "| val | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 33.33 | 33.33 |" in table
