"""The released LAVT-RS video checkpoints in ``lavt weights``: listed with the LAVT-RS
README's figures, downloaded by hand (``fetch`` says from where and to where)."""

from __future__ import annotations

import json
import re

import hub_server
import pytest

from lavt.cli import main as cli_main
from lavt.errors import CheckpointError
from lavt.hub import resolve_weights
from lavt.hub.registry import all_entries, find_entry

lavt_home, table = hub_server.lavt_home, hub_server.table

# The LAVT-RS README (github.com/Yxxxb/LAVT-RS, commit c464cf8), "Results and weights",
# "Video": its tables and links as published, the source the registry must agree with.
README_VIDEO = """
Results on the Refer-YouTube-VOS dataset under the “train-from-scratch” training setting with different backbone networks employed.
| Backbone     | J & F | J     | F     |
| ------------ | ----- | ----- | ----- |
| Video Swin-T | 57.04 | 55.39 | 58.69 |
| Video Swin-S | 58.79 | 57.10 | 60.49 |
| Video Swin-B | 60.45 | 58.49 | 62.42 |
Results on the Refer-YouTube-VOS dataset under the “pretrain-then-finetune” training setting with different backbone networks employed.
| Backbone     | J & F | J     | F     |
| ------------ | ----- | ----- | ----- |
| Video Swin-T | 60.91 | 59.37 | 62.45 |
| Video Swin-S | 62.96 | 60.35 | 65.56 |
| Video Swin-B | 64.90 | 62.22 | 67.58 |
Results on the A2D-Sentences dataset under the “train-from-scratch” training setting with different backbone networks employed.
| Backbone     | oIoU | mIoU |
| ------------ | ---- | ---- |
| Video Swin-T | 74.4 | 65.9 |
| Video Swin-S | 75.5 | 67.7 |
| Video Swin-B | 77.0 | 68.7 |
Results on the A2D-Sentences dataset under the “pretrain-then-finetune” training setting with different backbone networks employed.
| Backbone     | oIoU | mIoU |
| ------------ | ---- | ---- |
| Video Swin-T | 77.9 | 70.0 |
| Video Swin-S | 79.1 | 70.4 |
| Video Swin-B | 80.7 | 71.9 |
| Refer-YouTube-VOS | A2D-Sentences |
| --------------------- | ----------------- |
| [Refcoco_pretrain](https://cloud.tsinghua.edu.cn/d/54044571899a4d0ebffd/) | [Refcoco_pretrain](https://cloud.tsinghua.edu.cn/d/54044571899a4d0ebffd/) |
| [YTVOS_finetune](https://cloud.tsinghua.edu.cn/d/54d4499c22af48559fce/) | [A2D_finetune](https://cloud.tsinghua.edu.cn/d/282406a0385b4a62b857/) |
| [YTVOS_scratch]() | [A2D_scratch](https://cloud.tsinghua.edu.cn/d/51dd4e5c1dea41428b45/) |
"""  # noqa: E501

_DATASETS = {"Refer-YouTube-VOS": "ytvos", "A2D-Sentences": "a2d"}
_SETTINGS = {"train-from-scratch": "scratch", "pretrain-then-finetune": "finetune"}


def _readme_figures() -> dict[str, dict[str, str]]:
    """Entry name -> {metric: figure as printed} parsed from the README's tables."""
    figures, name, metrics = {}, None, []
    for line in README_VIDEO.strip().splitlines():
        heading = re.match(r"Results on the (.+) dataset under the “(.+)” training", line)
        if heading:
            name = f"lavt_video-{_DATASETS[heading[1]]}-{_SETTINGS[heading[2]]}"
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "Backbone":
            metrics = [c.replace(" ", "") for c in cells[1:]]
        elif cells[0].startswith("Video Swin-"):
            backbone = cells[0].split("-")[-1].lower()
            figures[f"{name}-swin-{backbone}"] = dict(zip(metrics, cells[1:], strict=True))
    return figures


def _readme_links() -> dict[str, str]:
    """README folder label -> its link ("" when the README gives none)."""
    return dict(re.findall(r"\[(\w+)\]\(([^)]*)\)", README_VIDEO))


def _video_entries():
    return {e.name: e for e in all_entries() if e.task == "video"}


def test_published_figures_are_the_readmes():
    figures = _readme_figures()
    assert len(figures) == 12
    entries = _video_entries()
    for name, published in figures.items():
        entry = entries[name]
        assert entry.results == {k: float(v) for k, v in published.items()}, name
    assert entries["lavt_video-ytvos-finetune-swin-b"].results["J&F"] == 64.90
    assert entries["lavt_video-a2d-finetune-swin-t"].results == {"oIoU": 77.9, "mIoU": 70.0}
    pretrain = [n for n in entries if "refcoco-pretrain" in n]
    assert len(pretrain) == 3 and all(not entries[n].results for n in pretrain)
    assert set(entries) == set(figures) | set(pretrain)


def test_pages_are_the_readmes_folders():
    links = _readme_links()
    for name, entry in _video_entries().items():
        setting = name.split("-")[1:3]  # ytvos finetune, a2d scratch, refcoco pretrain
        label = {"ytvos": "YTVOS", "a2d": "A2D", "refcoco": "Refcoco"}[setting[0]]
        assert entry.page == (links[f"{label}_{setting[1]}"] or None), name
        assert entry.manual and entry.kind == "lavt" and entry.sha256 is None


def test_list_shows_them_with_their_figures_as_printed(lavt_home, capsys):
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name, published in _readme_figures().items():
        block = out[out.index(f"  {name} ") :].split("\n")[1]
        assert " / ".join(f"{k} {v}" for k, v in published.items()) in block, name
    assert "lavt-refcoco" in out  # the image entries stay
    assert cli_main(["weights", "list", "--task", "video", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 15 and {r["task"] for r in rows} == {"video"}
    row = next(r for r in rows if r["name"] == "lavt_video-a2d-scratch-swin-s")
    assert row["published"] == {"oIoU": 75.5, "mIoU": 67.7} and row["overall_iou"] is None
    assert row["download"] == "by hand" and row["source"].startswith("https://cloud.tsinghua")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (
            "lavt_video-ytvos-finetune-swin-b",
            "download it by hand from https://cloud.tsinghua.edu.cn/d/54d4499c22af48559fce/",
        ),
        ("lavt_video-ytvos-scratch-swin-t", "no download link published for it"),
    ],
)
def test_fetch_says_where_to_get_it_and_where_to_put_it(lavt_home, capsys, name, says):
    assert cli_main(["weights", "fetch", name]) == 2
    out, err = capsys.readouterr()
    dest = lavt_home / "weights" / f"{name}.pth"
    assert out == "" and err.count("\n") == 1 and says in err and f"{dest}" in err, err
    assert not dest.exists()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"placed by hand")
    assert cli_main(["weights", "fetch", name]) == 0  # a copy put there is used
    assert capsys.readouterr().out.strip() == str(dest)
    assert (dest.parent / f"{name}.pth.json").is_file()  # its sha256 recorded


def test_video_checkpoint_is_no_training_initialisation(lavt_home):
    with pytest.raises(CheckpointError, match="a video checkpoint; lavt trains image models"):
        resolve_weights("lavt_video-a2d-finetune-swin-t", param="init_weights")


def test_a_table_entry_can_be_by_hand_and_video(lavt_home, table, capsys):
    page = "https://example.org/folder/"
    table([{"name": "mine-video", "page": page, "task": "video", "results": {"J&F": 50.5}}])
    entry = find_entry("mine-video")
    assert entry.manual and entry.task == "video" and entry.source == page
    assert cli_main(["weights", "fetch", "mine-video"]) == 2
    assert f"download it by hand from {page}" in capsys.readouterr().err
