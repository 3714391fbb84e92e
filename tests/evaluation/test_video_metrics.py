"""J, F and J&F (DAVIS 2017 definitions) on hand-made masks; every expected value is worked
out by hand in the comments (rows and columns 0-based, (row, column))."""

from __future__ import annotations

import pytest
import torch

from lavt.evaluation.video_metrics import (
    VideoMetrics,
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    dilate_disk,
    region_similarity,
)


def box(size: int, rows: range, cols: range) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[rows.start : rows.stop, cols.start : cols.stop] = True
    return mask


def grid(text: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in line.split()] for line in text.strip().splitlines()])


def test_region_similarity_by_hand():
    pred = box(4, range(0, 2), range(0, 2))  # 4 pixels
    gt = box(4, range(0, 2), range(1, 3))  # 4 pixels, overlapping in column 1: 2 pixels
    # I = 2, U = 4 + 4 - 2 = 6
    assert region_similarity(pred, gt).item() == pytest.approx(1 / 3)
    # void column 0 takes pred's two pixels there out of the union: I = 2, U = 6 - 2 = 4
    void = box(4, range(0, 4), range(0, 1))
    assert region_similarity(pred, gt, void).item() == pytest.approx(1 / 2)
    empty = torch.zeros(4, 4, dtype=torch.bool)
    # both empty: 1 by definition; an empty prediction of a present object: 0
    assert region_similarity(empty, empty).item() == 1.0
    assert region_similarity(empty, gt).item() == 0.0
    frames = region_similarity(torch.stack([pred, empty]), torch.stack([gt, empty]))
    assert frames.tolist() == pytest.approx([1 / 3, 1.0])


def test_boundary_map_is_thin_and_offset_to_the_origin():
    # a 2x2 block at rows 1-2, columns 1-2: a pixel is on the boundary when it differs from its
    # right, lower or lower-right neighbour. (0,0) differs from its lower-right (1,1); (1,1)
    # equals all three; (1,2) differs from its right (1,3); column 3 and row 3 see only zeros.
    block = box(4, range(1, 3), range(1, 3))
    expected = grid(
        """
        1 1 1 0
        1 0 1 0
        1 1 1 0
        0 0 0 0
        """
    )
    assert torch.equal(boundary_map(block), expected)
    # a mask filling the frame: the last row compares right neighbours only, the last column
    # lower ones only, and the corner is cleared, so the frame's border is no boundary
    assert not boundary_map(torch.ones(3, 3, dtype=torch.bool)).any()


def test_dilation_by_a_disk():
    point = torch.zeros(1, 7, 7, dtype=torch.bool)
    point[0, 3, 3] = True
    # radius 1: dy^2 + dx^2 <= 1 is the centre and its 4 neighbours
    assert dilate_disk(point, 1).sum() == 5
    # radius 2: 1 centre + 4 at distance 1 + 4 diagonals (2) + 4 at distance 2 (4) = 13;
    # (1, 2) offsets (5 > 4) stay out
    two = dilate_disk(point, 2)[0]
    assert two.sum() == 13 and two[2, 2] and two[1, 3] and not two[1, 2]
    corner = torch.zeros(1, 5, 5, dtype=torch.bool)
    corner[0, 0, 0] = True
    # at the border nothing wraps: (0,0), (0,1), (1,0)
    assert dilate_disk(corner, 1).sum() == 3


def test_boundary_radius():
    # ceil(0.008 * hypot(480, 854)) = ceil(0.008 * 979.65) = ceil(7.84) = 8
    assert boundary_radius(480, 854) == 8
    # ceil(0.008 * hypot(720, 1280)) = ceil(0.008 * 1468.6) = ceil(11.75) = 12
    assert boundary_radius(720, 1280) == 12
    assert boundary_radius(10, 10) == 1  # ceil(0.008 * 14.14) = ceil(0.11)
    assert boundary_radius(10, 10, bound_th=3) == 3  # >= 1: pixels


def test_boundary_f_measure_by_hand():
    # 10x10 frames: radius ceil(0.008 * 14.14) = 1, the 5-pixel plus.
    gt = box(10, range(1, 3), range(1, 3))
    # gt boundary (8 px): (0,0) (0,1) (0,2) (1,0) (1,2) (2,0) (2,1) (2,2)
    moved = box(10, range(1, 3), range(4, 6))
    # moved boundary (8 px): (0,3) (0,4) (0,5) (1,3) (1,5) (2,3) (2,4) (2,5)
    # within 1 of the other boundary: column 3 (next to column 2) and vice versa: P = R = 3/8
    assert boundary_f_measure(moved, gt).item() == pytest.approx(3 / 8)
    # radius 2 also reaches (0,4), (2,4) (2 from (0,2), (2,2)) and (0,1), (2,1): P = R = 5/8
    assert boundary_f_measure(moved, gt, bound_th=2).item() == pytest.approx(5 / 8)
    dot = box(10, range(1, 2), range(1, 2))
    # dot boundary (4 px): (0,0) (0,1) (1,0) (1,1); all within 1 of gt's boundary: P = 1.
    # gt's boundary within 1 of the dot's: all but (2,2) (its neighbours (1,2), (2,1), (3,2),
    # (2,3) are not on the dot's boundary): R = 7/8. F = 2 * 7/8 / (1 + 7/8) = 14/15
    assert boundary_f_measure(dot, gt).item() == pytest.approx(14 / 15)
    empty = torch.zeros(10, 10, dtype=torch.bool)
    # no predicted boundary: P = 1, R = 0; no ground-truth boundary: P = 0, R = 1; both: 1
    assert boundary_f_measure(empty, gt).item() == 0.0
    assert boundary_f_measure(gt, empty).item() == 0.0
    assert boundary_f_measure(empty, empty).item() == 1.0
    # void columns 4-9 erase the moved block before its boundary is taken: F = 0 as above
    void = box(10, range(0, 10), range(4, 10))
    assert boundary_f_measure(moved, gt, void).item() == 0.0


def test_video_metrics_means_over_frames_then_objects():
    metrics = VideoMetrics()
    # object 1, two 4x4 frames: the blocks one column apart (J = 1/3; in 4x4 the radius is
    # ceil(0.008 * 5.66) = 1: pred boundary (0,1) (1,0) (1,1), gt boundary (0,0) (1,0) (0,2)
    # (1,1) (1,2), each pixel within 1 of the other map: F = 1) and two empty frames (J = F = 1)
    pred = torch.stack([box(4, range(0, 2), range(0, 2)), torch.zeros(4, 4, dtype=torch.bool)])
    gt = torch.stack([box(4, range(0, 2), range(1, 3)), torch.zeros(4, 4, dtype=torch.bool)])
    j, f = metrics.add(pred, gt)
    assert (j, f) == pytest.approx((2 / 3, 1.0))  # J = (1/3 + 1) / 2
    # object 2, one 10x10 frame: the dot against the block: J = 1/4, F = 14/15 (above)
    second = VideoMetrics()
    j2, f2 = second.add(box(10, range(1, 2), range(1, 2)), box(10, range(1, 3), range(1, 3)))
    assert (j2, f2) == pytest.approx((1 / 4, 14 / 15))
    total = metrics.merge(second)
    # J = (2/3 + 1/4) / 2 = 11/24; F = (1 + 14/15) / 2 = 29/30; J&F = (11/24 + 29/30) / 2 = 0.7125
    summary = total.summary()
    assert summary["J"] == pytest.approx(100 * 11 / 24)
    assert summary["F"] == pytest.approx(100 * 29 / 30)
    assert summary["J&F"] == pytest.approx(71.25)
    assert total.all_reduce() == total  # one process: unchanged


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="different shapes"):
        region_similarity(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="different shapes"):
        boundary_f_measure(torch.zeros(4, 4), torch.zeros(4, 4), torch.zeros(3, 4))
