"""GRES metrics pinned to hand-computed cases (every row of the four-case table)."""

from __future__ import annotations

import pytest
import torch

from lavt.evaluation.gres_metrics import GresMetrics, format_gres_table, gres_sample_stats


def _mask(rows: list[str]) -> torch.Tensor:
    """'#' = foreground; one string per image row -> (H, W) bool."""
    return torch.tensor([[c == "#" for c in row] for row in rows])


# P: 4 pixels, G: 6 pixels, overlap 2 -> I = 2, U = 8
P = _mask(["##..", "##..", "...."])
G = _mask([".##.", ".##.", ".##."])
EMPTY = torch.zeros(3, 4, dtype=torch.bool)


def _stats(pred, target, pred_nt, gt_nt):
    inter, union, iou = gres_sample_stats(
        pred[None], target[None], torch.tensor([pred_nt]), torch.tensor([gt_nt])
    )
    return int(inter), int(union), float(iou)


def test_true_positive_adds_nothing_and_scores_one():
    # no-target expression, model says no-target: its (stray) mask does not matter
    assert _stats(P, EMPTY, True, True) == (0, 0, 1.0)


def test_false_negative_adds_predicted_area_to_union():
    assert _stats(P, EMPTY, False, True) == (0, 4, 0.0)
    # an empty mask alone is no correct rejection: still IoU 0
    assert _stats(EMPTY, EMPTY, False, True) == (0, 0, 0.0)


def test_false_positive_keeps_the_unzeroed_union():
    assert _stats(P, G, True, False) == (0, 8, 0.0)


def test_true_negative_is_plain_iou():
    inter, union, iou = _stats(P, G, False, False)
    assert (inter, union) == (2, 8) and iou == pytest.approx(0.25)
    assert _stats(EMPTY, EMPTY, False, False) == (0, 0, 0.0)  # U = 0 -> IoU 0


def test_summary_of_a_mixed_split():
    m = GresMetrics()
    preds = torch.stack([P, P, P, P, G])
    targets = torch.stack([EMPTY, EMPTY, G, G, G])
    pred_nt = torch.tensor([True, False, True, False, False])
    gt_nt = torch.tensor([True, True, False, False, False])
    iou = m.update(preds, targets, pred_nt, gt_nt)
    assert iou.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.25, 1.0])
    s = m.summary()
    # I: 0 + 0 + 0 + 2 + 6 = 8; U: 0 + 4 + 8 + 8 + 6 = 26
    assert s["cIoU"] == pytest.approx(100 * 8 / 26)
    assert s["gIoU"] == pytest.approx(100 * (1 + 0.25 + 1) / 5)
    assert s["N-acc"] == pytest.approx(50.0)  # TP 1, FN 1
    assert s["T-acc"] == pytest.approx(100 * 2 / 3)  # TN 2, FP 1
    # Pr@X over the 3 target samples only: IoUs 0, 0.25, 1
    assert s["Pr@0.7"] == pytest.approx(100 / 3)
    assert s["Pr@0.9"] == pytest.approx(100 / 3)
    assert (s["samples"], s["no_target_samples"]) == (5.0, 2.0)


def test_split_without_no_target_samples_has_zero_n_acc_and_t_acc():
    """The GRES code: ``if empty_count > 0: ... else: T_acc = N_acc = 0``, so a split
    without no-target samples compares with published tables (T-acc 0, not 100)."""
    m = GresMetrics()
    m.update(P[None], G[None], torch.tensor([False]), torch.tensor([False]))  # TN
    s = m.summary()
    assert s["N-acc"] == 0.0 and s["T-acc"] == 0.0
    assert s["cIoU"] == pytest.approx(25.0)
    m.update(P[None], G[None], torch.tensor([True]), torch.tensor([False]))  # FP
    assert (m.summary()["N-acc"], m.summary()["T-acc"]) == (0.0, 0.0)
    m.update(P[None], EMPTY[None], torch.tensor([True]), torch.tensor([True]))  # TP
    assert (m.summary()["N-acc"], m.summary()["T-acc"]) == (100.0, 50.0)  # TN 1, FP 1


def test_empty_union_gives_zero_ciou_not_an_error():
    m = GresMetrics()
    m.update(P[None], EMPTY[None], torch.tensor([True]), torch.tensor([True]))
    s = m.summary()
    assert s["cIoU"] == 0.0 and s["gIoU"] == 100.0 and s["N-acc"] == 100.0
    assert s["Pr@0.7"] == 0.0  # no target sample at all
    assert GresMetrics().summary()["gIoU"] == 0.0


def test_merge_in_any_split_equals_one_pass():
    torch.manual_seed(0)
    preds = torch.rand(12, 5, 6) > 0.5
    targets = torch.rand(12, 5, 6) > 0.6
    gt_nt = torch.rand(12) > 0.6
    targets[gt_nt] = False
    pred_nt = torch.rand(12) > 0.5
    whole = GresMetrics()
    whole.update(preds, targets, pred_nt, gt_nt)
    a, b = GresMetrics(), GresMetrics()
    a.update(preds[:5], targets[:5], pred_nt[:5], gt_nt[:5])
    b.update(preds[5:], targets[5:], pred_nt[5:], gt_nt[5:])
    assert a.merge(b) == b.merge(a) == whole
    assert a.all_reduce() == a  # not distributed: unchanged
    assert whole.num_samples == 12


def test_table_has_one_row_per_split():
    m = GresMetrics()
    m.update(P[None], G[None], torch.tensor([False]), torch.tensor([False]))
    table = format_gres_table({"val": m.summary()})
    assert table.splitlines()[0].startswith("| Split | cIoU | gIoU | N-acc")
    assert "| val | 25.00 | 25.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |" in table  # GRES: T-acc 0
