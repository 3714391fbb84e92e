"""Bulk inference's pipeline: its vectorised postprocessing, its defaults, its torch threads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from manifest_helpers import run, scenes_manifest

import lavt.predict.bulk as bulk
import lavt.predict.bulk_post as bulk_post
from lavt.modeling import LAVT
from lavt.predict.bulk_data import LoadedImage, Segment, Task
from lavt.predict.encode import encode_prediction
from lavt.predict.manifest import ManifestLine
from lavt.predict.predictor import predictions_from_logits

TEXTS = ("the red circle", "the blue square", "big red disc")


def _segments() -> list[Segment]:
    """Rows 0-2: three texts of a 310x230 image; rows 3-4: two of a 160x300 one."""
    segments, start = [], 0
    for line, (width, height), todo in ((4, (310, 230), (0, 1, 2)), (9, (160, 300), (2, 0))):
        entry = ManifestLine(line, f"id{line}", f"{line}.png", Path(f"{line}.png"), TEXTS)
        item = LoadedImage(Task(entry, todo), None, width, height)
        segments.append(Segment(item, list(todo), start, start + len(todo)))
        start += len(todo)
    return segments


def _one_at_a_time(segments, logits, no_target, rule, area_threshold) -> list[dict]:
    """The predictor's path: predictions_from_logits, then encode_prediction, a pair at a time."""
    records = []
    for seg in segments:
        item, entry = seg.item, seg.item.task.entry
        rows = slice(seg.start, seg.stop)
        predictions = predictions_from_logits(
            [entry.texts[k] for k in seg.indices], logits[rows],
            None if no_target is None else no_target[rows], (item.height, item.width),
            rule=rule, area_threshold=area_threshold,
        )  # fmt: skip
        for k, prediction in zip(seg.indices, predictions, strict=True):
            result = encode_prediction(prediction)
            record = {"line": entry.line, "text_index": k, "id": entry.id}
            record |= {"image": entry.image, "text": result.pop("text")}
            records.append(record | {"width": item.width, "height": item.height, **result})
    return records


@pytest.mark.parametrize("rule", ["area", "head"])
@pytest.mark.parametrize("pixels_per_step", [bulk_post.PIXELS_PER_STEP, 70_000])
def test_batch_records_are_the_predictors_lines_byte_for_byte(monkeypatch, rule, pixels_per_step):
    monkeypatch.setattr(bulk_post, "PIXELS_PER_STEP", pixels_per_step)  # 70000: one row a step
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 2, 8, 8, generator=generator) * 2  # (B, 2, S, S)
    logits[1, 1] -= 8  # an empty mask
    no_target = torch.randn(5, 2, generator=generator) if rule == "head" else None
    threshold = 25 if rule == "area" else 0  # the area rule drops some small masks
    segments = _segments()
    got = bulk_post.batch_records(segments, logits, no_target, rule=rule, area_threshold=threshold)
    expected = _one_at_a_time(segments, logits, no_target, rule, threshold)
    assert [json.dumps(r) for r in got] == [json.dumps(r) for r in expected]
    assert {r["found"] for r in got} == {True, False}  # both cases are exercised
    assert any(r["area"] > 0 for r in got) and any(r["area"] == 0 for r in got)


def test_scores_are_torchs_masked_mean_unrounded():
    logits = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(5)) * 3
    size, nothing = (240, 320), torch.tensor([False, True, False])
    masks, scores = bulk_post._masks_and_scores(logits, nothing, size)
    foreground = LAVT.postprocess(logits, size)  # (3, H, W)
    for row in (0, 2):  # found: the mask, and torch's own masked mean to the last bit
        mask = foreground[row] > 0
        assert scores[row] == float(foreground[row][mask].sigmoid().mean()) > 0
        assert (masks[row] == mask.numpy()).all() and masks[row].any()
    assert scores[1] == 0.0 and not masks[1].any()  # nothing found: empty, score 0


@pytest.mark.parametrize(
    ("device", "cores", "img_size", "expected"),
    [
        ("cpu", 2, 64, bulk.PipelinePlan(32, 0, 2, 1)),  # the bundled model on 2 cores
        ("cpu", 1, 480, bulk.PipelinePlan(16, 0, 1, 1)),
        ("cpu", 16, 384, bulk.PipelinePlan(25, 2, 4, 4)),
        ("cuda", 16, 480, bulk.PipelinePlan(16, 2, 2, None)),
    ],
)
def test_choose_pipeline_defaults(monkeypatch, device, cores, img_size, expected):
    monkeypatch.setattr(bulk, "available_cores", lambda: cores)
    assert bulk.choose_pipeline(torch.device(device), img_size) == expected
    given = bulk.choose_pipeline(torch.device(device), img_size, batch_size=5, workers=3, threads=2)
    assert (given.batch_size, given.workers, given.threads) == (5, 3, 2)


def test_available_cores_are_shared_by_torchruns_processes(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = bulk.available_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(alone))
    assert bulk.available_cores() == 1


def test_forwards_run_on_the_planned_threads_and_the_callers_setting_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "available_cores", lambda: 6)
    seen, forward = [], bulk._forward

    def spy(predictor, batch):
        seen.append(torch.get_num_threads())
        return forward(predictor, batch)

    monkeypatch.setattr(bulk, "_forward", spy)
    before = torch.get_num_threads()
    manifest = scenes_manifest(tmp_path, 6)
    assert run(manifest, tmp_path / "out", "--batch-size", "2", "--threads", "2") == 0
    assert seen and set(seen) == {3}  # 6 cores // 2 threads
    assert torch.get_num_threads() == before


def test_pipeline_flags_take_a_count_or_auto(tmp_path, capsys):
    manifest = scenes_manifest(tmp_path, 2)
    with pytest.raises(SystemExit) as exit_info:
        run(manifest, tmp_path / "bad", "--threads", "many")
    assert exit_info.value.code == 2
    assert "--threads: expected an integer or auto, got 'many'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    flags = ("--batch-size", "auto", "--workers", "auto", "--threads", "auto")
    assert run(manifest, tmp_path / "auto", *flags) == 0
