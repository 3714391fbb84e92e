"""The model card (``README.md`` of a pretrained folder), generated from what is known.

YAML front matter the Hugging Face Hub reads (``license``, ``library_name: lavt``,
``pipeline_tag: image-segmentation``, ``tags``, ``datasets`` and a ``model-index``
with the evaluation results when there are any), then the architecture, a usage
snippet, the results table and the citation. Nothing is hand-written: numbers come
from the config, from ``lavt evaluate``'s ``metrics.json`` and, for the released
weights, from the figures published in the LAVT README (the registry's table).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lavt.errors import InputError
from lavt.hub.registry import LAVT_HOMEPAGE
from lavt.modeling.config import LAVTConfig

LIBRARY = "lavt"
PIPELINE_TAG = "image-segmentation"
TAGS = (
    "lavt",
    "referring-image-segmentation",
    "referring-expression-segmentation",
    "vision-language",
    "swin-transformer",
    "bert",
    "pytorch",
    "safetensors",
)
#: dataset ids (as the released-weights table and ``lavt evaluate --dataset`` spell them)
DATASET_NAMES = {
    "refcoco": "RefCOCO (UNC)",
    "refcoco+": "RefCOCO+ (UNC)",
    "refcocog": "G-Ref",
    "gref-umd": "G-Ref (UMD split)",
    "gref-google": "G-Ref (Google split)",
    "grefcoco": "gRefCOCO",
    "synthetic": "lavt synth scenes",
}
#: metrics.json keys -> (model-index metric type, name shown); classic then GRES
METRIC_NAMES = {
    "overall_iou": ("overall_iou", "overall IoU"),
    "mean_iou": ("mean_iou", "mean IoU"),
    "precision@0.5": ("precision_at_0.5", "precision@0.5"),
    "precision@0.7": ("precision_at_0.7", "precision@0.7"),
    "precision@0.9": ("precision_at_0.9", "precision@0.9"),
    "cIoU": ("ciou", "cIoU"),
    "gIoU": ("giou", "gIoU"),
    "N-acc": ("n_acc", "N-acc"),
    "T-acc": ("t_acc", "T-acc"),
}
PAPER = "https://arxiv.org/abs/2112.02244"
CITATION = """@inproceedings{yang2022lavt,
  title={LAVT: Language-Aware Vision Transformer for Referring Image Segmentation},
  author={Yang, Zhao and Wang, Jiaqi and Tang, Yansong and Chen, Kai and Zhao, Hengshuang
          and Torr, Philip H.S.},
  booktitle={CVPR},
  year={2022}
}"""


@dataclass(frozen=True)
class CardInfo:
    """What the card says beyond the config.

    ``metrics``: ``{split: {metric: percent}}`` as ``lavt evaluate`` writes
    ``metrics.json``; ``published``: ``{split: overall IoU}`` from the LAVT README
    (released weights); ``dataset``: the data both were measured on (a key of
    :data:`DATASET_NAMES` or any name); ``repo_id``: for the usage snippet; ``origin``:
    where the weights came from (a released name, a file).
    """

    dataset: str | None = None
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    published: Mapping[str, float] = field(default_factory=dict)
    repo_id: str | None = None
    origin: str | None = None
    license: str = "apache-2.0"


def read_metrics(path: str | Path) -> dict[str, dict[str, float]]:
    """``lavt evaluate``'s ``metrics.json``: ``{split: {metric: number}}`` (other values
    such as the no-target rule's name are dropped); errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        message = f"metrics {path}: not a readable JSON file ({err})"
        raise InputError(message, param="metrics") from None
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, dict) for v in data.values())
    ):
        raise InputError(
            f"metrics {path}: expected lavt evaluate's metrics.json ({{split: {{metric: value}}}})",
            param="metrics",
        )
    out = {}
    for split, row in data.items():
        numbers = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        if not any(k in METRIC_NAMES for k in numbers):
            raise InputError(
                f"metrics {path}: split {split!r} has none of {', '.join(METRIC_NAMES)}",
                param="metrics",
            )
        out[str(split)] = numbers
    return out


def _model_index(name: str, info: CardInfo) -> list[dict[str, Any]]:
    """The Hub's ``model-index``: one result per (split, source) with its metrics."""
    dataset = info.dataset or "unspecified"
    results = []
    rows = [(s, row, "lavt evaluate") for s, row in info.metrics.items()]
    rows += [(s, {"overall_iou": v}, "LAVT README (published)") for s, v in info.published.items()]
    for split, row, source in rows:
        metrics = [
            {"type": METRIC_NAMES[k][0], "name": METRIC_NAMES[k][1], "value": round(v, 2)}
            for k, v in row.items()
            if k in METRIC_NAMES
        ]
        results.append(
            {
                "task": {"type": PIPELINE_TAG, "name": "Referring image segmentation"},
                "dataset": {
                    "name": DATASET_NAMES.get(dataset, dataset),
                    "type": dataset,
                    "split": split,
                },
                "metrics": metrics,
                "source": {"name": source, "url": LAVT_HOMEPAGE}
                if source.startswith("LAVT")
                else {"name": source},
            }
        )
    return [{"name": name, "results": results}] if results else []


def front_matter(config: LAVTConfig, info: CardInfo) -> dict[str, Any]:
    """The card's YAML metadata as a dict."""
    meta: dict[str, Any] = {
        "license": info.license,
        "library_name": LIBRARY,
        "pipeline_tag": PIPELINE_TAG,
        "tags": list(TAGS)
        + (["generalized-referring-segmentation"] if config.no_target_head else []),
    }
    if info.dataset:
        meta["datasets"] = [info.dataset]
    name = (info.repo_id or info.origin or "lavt").rsplit("/", 1)[-1]
    index = _model_index(name, info)
    if index:
        meta["model-index"] = index
    return meta


def _architecture(config: LAVTConfig, vocab_size: int | None, parameters: int) -> str:
    text = config.text
    vocab = f"its own, {vocab_size} tokens" if vocab_size else "bert-base-uncased"
    rows = [
        ("variant", f"`{config.variant}` (how the released files store BERT; same computation)"),
        (
            "Swin",
            f"embed {config.embed_dim}, depths {list(config.depths)}, heads "
            f"{list(config.num_heads)}, window {config.window_size}",
        ),
        ("PWAM heads", str(list(config.pwam_heads))),
        (
            "text encoder",
            f"BERT, {text.num_layers} layers, width {text.hidden_size}, {text.num_heads} heads",
        ),
        (
            "tokenizer",
            f"WordPiece, {vocab} (`vocab.txt`), {config.max_text_len} ids per expression",
        ),
        ("input", f"{config.img_size} x {config.img_size} px, ImageNet normalisation"),
        (
            "no-target head",
            "yes (generalized referring segmentation)" if config.no_target_head else "no",
        ),
        ("parameters", f"{parameters / 1e6:.1f} M"),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _results(info: CardInfo) -> str:
    if not info.metrics and not info.published:
        return "No evaluation results were recorded with these weights."
    dataset = DATASET_NAMES.get(info.dataset or "", info.dataset or "unspecified data")
    lines = []
    if info.metrics:
        keys = [k for k in METRIC_NAMES if any(k in row for row in info.metrics.values())]
        lines += [f"Measured with `lavt evaluate` on {dataset} (percent):", ""]
        lines += ["| split | " + " | ".join(METRIC_NAMES[k][1] for k in keys) + " |"]
        lines += ["|---" * (len(keys) + 1) + "|"]
        for split, row in info.metrics.items():
            cells = [f"{row[k]:.2f}" if k in row else "" for k in keys]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
        lines.append("")
    if info.published:
        lines += [f"Published in the LAVT README ({dataset}, overall IoU, percent):", ""]
        lines += ["| split | overall IoU |", "|---|---|"]
        lines += [f"| {split} | {value:.2f} |" for split, value in info.published.items()]
    return "\n".join(lines).rstrip()


def model_card(
    config: LAVTConfig, info: CardInfo, *, vocab_size: int | None, parameters: int
) -> str:
    """The whole ``README.md``: front matter, description, usage, results, citation.

    ``vocab_size``: the model's own vocabulary's size, None for bert-base-uncased."""
    meta = yaml.safe_dump(front_matter(config, info), sort_keys=False, allow_unicode=True)
    where = info.repo_id or "path/to/this/folder"
    source = f"hf://{info.repo_id}" if info.repo_id else where
    origin = f" Converted from `{info.origin}`." if info.origin else ""
    return f"""---
{meta.rstrip()}
---

# {(info.repo_id or info.origin or "LAVT").rsplit("/", 1)[-1]}

A LAVT (Language-Aware Vision Transformer, [Yang et al., CVPR 2022]({PAPER})) model for
referring image segmentation: given an image and an English expression such as "the man
on the left", it returns the mask of the object meant. Saved by the
`lavt` library (`pip install lavt`).{origin}

## Usage

```bash
pip install 'lavt[hub]'
lavt predict --checkpoint {source} --image photo.jpg --text "the man on the left"
```

```python
import lavt

model = lavt.LAVT.from_pretrained("{where}")
predictor = lavt.Predictor(model)
result = predictor.predict("photo.jpg", ["the man on the left"])[0]
print(result.mask.shape, result.mean_foreground_probability)
```

Loading reads `config.json`, `vocab.txt` and `model.safetensors` only: no code from
this repository runs and nothing is unpickled.

## Model

{_architecture(config, vocab_size, parameters)}

## Results

{_results(info)}

## Files

- `config.json`: the `LAVTConfig` (a plain dict) that rebuilds the model;
- `model.safetensors`: the weights;
- `vocab.txt`, `tokenizer_config.json`: the WordPiece vocabulary (lower-cased);
- `README.md`: this card, generated by `lavt` from the config and the metrics.

## Citation

```bibtex
{CITATION}
```
"""
