"""The released LAVT-RS video checkpoints (Yang et al., TPAMI 2024; github.com/Yxxxb/LAVT-RS).

The LAVT-RS README (commit c464cf8, "Results and weights", "Video") links one
Tsinghua cloud *folder* per training setting, without file names, direct links or
checksums (its ``YTVOS_scratch`` link is empty), and publishes per Video Swin
backbone (T, S, B) and setting ("train-from-scratch", "pretrain-then-finetune":
pretrained on RefCOCO, the ``Refcoco_pretrain`` folder) J&F, J and F on
Refer-YouTube-VOS's valid split and overall (oIoU) and mean IoU (mIoU) on
A2D-Sentences.

So every entry here is downloaded by hand: ``lavt weights fetch NAME`` says from
which folder and where to put the file; a file placed there is then used like any
cached download (its sha256 recorded at first use). One name per backbone: the
README's tables report Swin-T, -S and -B for every setting.

Plain data only (no import of :mod:`lavt.hub.registry`, which builds the entries).
"""

from __future__ import annotations

LAVT_RS = "https://github.com/Yxxxb/LAVT-RS"
_CLOUD = "https://cloud.tsinghua.edu.cn/d/"

#: decimals the README prints each metric with (the others: 2)
DECIMALS = {"oIoU": 1, "mIoU": 1}

BACKBONES = (("swin-t", "Video Swin-T"), ("swin-s", "Video Swin-S"), ("swin-b", "Video Swin-B"))

# (name stem, README folder label, folder page or None, training data, setting,
#  published figures per backbone in BACKBONES order)
RELEASED_VIDEO = (
    (
        "lavt_video-ytvos-finetune",
        "YTVOS_finetune",
        _CLOUD + "54d4499c22af48559fce/",
        "Refer-YouTube-VOS",
        "pretrained on RefCOCO, then fine-tuned",
        (
            {"J&F": 60.91, "J": 59.37, "F": 62.45},
            {"J&F": 62.96, "J": 60.35, "F": 65.56},
            {"J&F": 64.90, "J": 62.22, "F": 67.58},
        ),
    ),
    (
        "lavt_video-ytvos-scratch",
        "YTVOS_scratch",
        None,  # the README's link is empty
        "Refer-YouTube-VOS",
        "trained from scratch",
        (
            {"J&F": 57.04, "J": 55.39, "F": 58.69},
            {"J&F": 58.79, "J": 57.10, "F": 60.49},
            {"J&F": 60.45, "J": 58.49, "F": 62.42},
        ),
    ),
    (
        "lavt_video-a2d-finetune",
        "A2D_finetune",
        _CLOUD + "282406a0385b4a62b857/",
        "A2D-Sentences",
        "pretrained on RefCOCO, then fine-tuned",
        ({"oIoU": 77.9, "mIoU": 70.0}, {"oIoU": 79.1, "mIoU": 70.4}, {"oIoU": 80.7, "mIoU": 71.9}),
    ),
    (
        "lavt_video-a2d-scratch",
        "A2D_scratch",
        _CLOUD + "51dd4e5c1dea41428b45/",
        "A2D-Sentences",
        "trained from scratch",
        ({"oIoU": 74.4, "mIoU": 65.9}, {"oIoU": 75.5, "mIoU": 67.7}, {"oIoU": 77.0, "mIoU": 68.7}),
    ),
    (
        "lavt_video-refcoco-pretrain",
        "Refcoco_pretrain",
        _CLOUD + "54044571899a4d0ebffd/",
        "RefCOCO (the fine-tuned models' initialisation)",
        "pretrained on RefCOCO",
        ({}, {}, {}),
    ),
)


def video_rows() -> list[dict]:
    """One dict per (setting, backbone): the fields of a registry entry."""
    rows = []
    for stem, _folder, page, data, setting, figures in RELEASED_VIDEO:
        for (suffix, backbone), results in zip(BACKBONES, figures, strict=True):
            rows.append(
                {
                    "name": f"{stem}-{suffix}",
                    "variant": f"lavt_video (LAVT-RS), {backbone}, {setting}",
                    "data": data,
                    "page": page,
                    "results": dict(results),
                }
            )
    return rows


def format_figure(metric: str, value: float) -> str:
    """A published figure as the README prints it ("J&F 64.90", "oIoU 77.9")."""
    return f"{metric} {value:.{DECIMALS.get(metric, 2)}f}"
