"""The training configuration: one frozen dataclass, each option declared once.

Every field of :class:`TrainConfig` carries its type, default and help text (and,
where the reference spells it differently, its flag). Everything else is derived
from those declarations:

- YAML files (:func:`load_config_file`), with ``base: other.yaml`` chains whose
  mappings (``arch``, ``arch.text``) a child updates key by key;
- ``key=value`` overrides (:func:`parse_override`), nested for mappings
  (``arch.text.num_layers=2``), accepted anywhere among the flags;
- type checks and conversions, range checks and choices (``TrainConfig.__post_init__``),
  with one-line messages that start with the key (``img_size 0: must be positive``);
- the ``lavt train`` flags and their help (``lavt.commands.train`` reads the
  fields): ``--img-size`` with ``--img_size`` as an alias, every default shown;
- the saved ``RUN/config.yaml`` (:func:`save_config`), which ``--config`` reads back.

Precedence: defaults < YAML < flags < ``key=value``; with ``init_weights``, the
checkpoint's architecture and the fine-tuning defaults come in just above the
defaults (:mod:`lavt.train.finetune`).

Adding an option is one line in :class:`TrainConfig` (``check``/``choices`` optional).
A hand-written schema rather than OmegaConf or tyro: the YAML ``base:`` chains, the
reference's flag spellings, ``key=value`` anywhere and the error messages naming
the key would each need code around those libraries, so the dataclass fields drive
a small loader here instead (DINOv2 and timm configs inspired the layering).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lavt.errors import InputError
from lavt.modeling.config import PRESETS, VARIANTS
from lavt.train.losses import LOSSES
from lavt.train.optim import DEFAULT_TEXT_TRAINABLE

AMP_NAMES = ("none", "bf16", "fp16")


def opt(default: Any, help: str, *, group: str = "run", **meta: Any) -> dataclasses.Field:
    """One option: default, help, and optional ``flag``, ``check``, ``choices``, ``metavar``.

    ``check``: ``positive`` (>= 1 for integers, > 0 for numbers), ``non_negative``
    or ``fraction`` ([0, 1)). ``shown``: how help shows a None default.
    """
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; the defaults are the published recipe's."""

    # data
    dataset: str = opt(
        "refcoco",
        "refcoco, refcoco+, refcocog, grefcoco (or a synth root's name)",
        group="data",
    )
    splitBy: str = opt(
        "unc", "annotation partition: unc, umd or google", group="data", flag="--splitBy"
    )
    data_root: str = opt(
        "./refer/data", "refer data root (holds DATASET/ and images/)", group="data"
    )
    train_split: str = opt("train", "split trained on", group="data")
    val_split: str = opt("val", "split validated on after each epoch", group="data")
    skip_missing: bool = opt(False, "skip objects whose image file is missing", group="data")
    # model
    model: str = opt(
        "lavt", "lavt (separate BERT) or lavt_one (BERT inside)", group="model", choices=VARIANTS
    )
    swin_type: str = opt("base", "Swin preset", group="model", choices=PRESETS)
    window12: bool | None = opt(
        None,
        "Swin window 12 (else 7)",
        group="model",
        shown="12 if the Swin file's name says window12",
    )
    mha: str = opt("", "PWAM heads per stage, a-b-c-d", group="model", shown="1-1-1-1")
    drop_path: float = opt(
        0.3, "stochastic depth rate of the Swin blocks", group="model", check="fraction"
    )
    fusion_drop: float = opt(0.0, "dropout in the PWAM fusion", group="model", check="fraction")
    img_size: int = opt(480, "input size (square, pixels)", group="model", check="positive")
    arch: dict | None = opt(None, "custom architecture (YAML, arch.KEY=VALUE)", group="model")  # noqa: RUF009
    pretrained_swin_weights: str | None = opt(
        None, "official Swin ImageNet .pth", group="model", metavar="PATH"
    )
    text_encoder: str | None = opt(
        None, "BERT weights: a Hugging Face name or local folder", group="model"
    )
    text_trainable: str = opt(
        DEFAULT_TEXT_TRAINABLE,
        "trained BERT parts: all, none or encoder layers A-B (embeddings frozen)",
        group="model",
        metavar="all|none|A-B",
    )
    freeze: str = opt(
        "",
        "parts kept fixed, a comma list: backbone.stage1..4, backbone (all 4), text_encoder",
        group="model",
        metavar="PARTS",
        shown="nothing",
    )
    no_target_head: bool | None = opt(
        None,
        "GRES no-target classifier (docs/gres.md)",
        group="model",
        shown="true for grefcoco",
    )
    no_target_loss_weight: float = opt(
        0.1, "weight of the no-target cross-entropy", group="optimisation", check="non_negative"
    )
    init_weights: str | None = opt(
        None,
        "fine-tune from a LAVT checkpoint (path or name: synthetic, lavt_one-refcoco, ...); "
        "architecture, input size and vocabulary then come from it, and unset options "
        "take the fine-tuning defaults (docs/training.md)",
        group="model",
        metavar="NAME_OR_PATH",
    )
    # optimisation
    batch_size: int = opt(8, "samples per process and step", group="optimisation", check="positive")
    val_batch_size: int | None = opt(
        None, "validation batch size", group="optimisation", check="positive", shown="batch_size"
    )
    lr: float = opt(5e-5, "AdamW learning rate", group="optimisation", check="positive")
    wd: float = opt(1e-2, "AdamW weight decay", group="optimisation", check="non_negative")
    epochs: int = opt(40, "epochs to train", group="optimisation", check="positive")
    warmup_iters: int = opt(
        0, "linear LR warm-up steps", group="optimisation", check="non_negative"
    )
    lr_power: float = opt(
        0.9, "power of the polynomial LR decay", group="optimisation", check="non_negative"
    )
    loss: str = opt(
        "ce", "weighted cross-entropy, Dice, or both", group="optimisation", choices=LOSSES
    )
    grad_accum: int = opt(
        1, "batches accumulated per optimizer step", group="optimisation", check="positive"
    )
    amp: str = opt(
        "none", "autocast dtype (fp16 adds a GradScaler)", group="optimisation", choices=AMP_NAMES
    )
    grad_checkpointing: bool = opt(
        False, "recompute Swin stages in backward (less memory)", group="optimisation"
    )
    compile: bool = opt(False, "torch.compile the model", group="optimisation")
    channels_last: bool = opt(False, "channels-last convolutions", group="optimisation")
    max_nonfinite: int = opt(
        10,
        "stop after K NaN/inf losses in a row, checked every step (0: never)",
        group="optimisation",
        check="non_negative",
        metavar="K",
    )
    # run
    model_id: str | None = opt(None, "run name: the run directory's name", shown="MODEL_DATASET")
    output_dir: str = opt("runs", "parent of run directories")
    resume: str | None = opt(
        None,
        "auto: continue RUN/last.pt, or start the run if there is none (refused when RUN "
        "is missing but OUTPUT_DIR holds other runs); PATH: continue that last.pt",
        metavar="auto|PATH",
    )
    allow_config_change: bool = opt(
        False, "on resume, accept a config that differs from the run's (changes are logged)"
    )
    seed: int = opt(0, "seed of weights, data order and dropout", check="non_negative")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    threads: int | None = opt(
        None, "torch CPU threads per process", check="positive", shown="torch's choice"
    )
    workers: int = opt(4, "data loader workers per process", check="non_negative")
    log_every: int = opt(50, "steps between log lines", check="positive", metavar="N")
    checkpoint_every: int = opt(
        0,
        "also write last.pt every N steps (0: epoch ends only)",
        check="non_negative",
        metavar="N",
    )
    dist_timeout: float = opt(
        1800.0,
        "seconds a collective waits for a silent process before the run stops",
        check="positive",
        metavar="S",
    )
    val_every: int = opt(
        1, "epochs between validations (the last epoch always)", check="positive", metavar="EPOCHS"
    )
    progress: bool = opt(True, "progress bar")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = coerce(f.name, getattr(self, f.name))
            _check_range(f, value)
            object.__setattr__(self, f.name, value)
        if self.init_weights and (self.pretrained_swin_weights or self.text_encoder):
            raise InputError(
                "init_weights sets every weight; drop pretrained_swin_weights and text_encoder",
                param="init_weights",
            )
        from lavt.train.finetune import freeze_prefixes

        freeze_prefixes(self.freeze)  # refuses an unknown part
        if self.model_id is None:
            object.__setattr__(self, "model_id", f"{self.model}_{self.dataset}")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / str(self.model_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a copy): what checkpoints and ``RUN/config.yaml`` store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | None = None) -> TrainConfig:
        """Build from a mapping of config keys; unknown keys are refused."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            where = f"{source}: " if source else ""
            raise InputError(f"{where}unknown config key {unknown[0]!r}")
        return cls(**values)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


@functools.cache
def _types() -> dict[str, tuple[type, bool]]:
    """key -> (base type, None allowed), read from the annotations."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if args else hint
        out[name] = (typing.get_origin(base) or base, len(args) < len(typing.get_args(hint)))
    return out


def field_type(key: str) -> type:
    """The base type of option ``key``: bool, int, float, str or dict."""
    return _types()[key][0]


_WHAT = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
}


def coerce(key: str, value: Any, source: str | None = None) -> Any:
    """Check ``value`` against the type of ``key``; convert where unambiguous ("3" -> 3)."""
    kind, optional = _types()[key]
    if value is None and optional:
        return None
    is_bool = isinstance(value, bool)
    if kind is bool:
        if is_bool:
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif kind is float and not is_bool:
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif kind is int and not is_bool:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is str and not is_bool and isinstance(value, str | int | float):
        return str(value)
    elif kind is dict and isinstance(value, dict):
        return value
    where = f"{source}: " if source else ""
    raise InputError(
        f"{where}{key} {value!r}: must be {_WHAT[kind]}", param=None if source else key
    )


def _check_range(f: dataclasses.Field, value: Any) -> None:
    choices, check = f.metadata.get("choices"), f.metadata.get("check")
    if value is None or (choices is None and check is None):
        return
    if choices is not None and value not in choices:
        problem = f"must be one of {', '.join(choices)}"
    elif check == "positive" and not (value >= 1 if isinstance(value, int) else value > 0):
        problem = "must be positive"
    elif check == "non_negative" and value < 0:
        problem = "must not be negative"
    elif check == "fraction" and not 0.0 <= value < 1.0:
        problem = "must be in [0, 1)"
    else:
        return
    raise InputError(f"{f.name} {value!r}: {problem}", param=f.name)


# ----------------------------------------------------------------------------- layers


def merge(base: Any, value: Any) -> Any:
    """A mapping updates its base's mapping key by key (``arch.text`` too); else replaces it."""
    if isinstance(base, dict) and isinstance(value, dict):
        return {**base, **{k: merge(base.get(k), v) for k, v in value.items()}}
    return value


def load_config_file(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config; a ``base: other.yaml`` key (relative to the file) is read first."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"config {path}: file not found", param="config")
    if path.resolve() in _seen:
        raise InputError(f"config {path}: 'base' chain loops back to this file", param="config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise InputError(f"config {path}: not valid YAML ({first})", param="config") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path}: expected a mapping of config keys", param="config")
    base = data.pop("base", None)
    out = load_config_file(path.parent / str(base), (*_seen, path.resolve())) if base else {}
    for key, value in data.items():
        if key not in FIELDS:
            raise InputError(f"{path}: unknown config key {key!r}")
        out[key] = merge(out.get(key), coerce(key, value, source=str(path)))
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``key=value`` (``arch.embed_dim=32`` for nested keys); the value is read as YAML."""
    import yaml

    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep:
        raise InputError(f"override {item!r}: expected key=value")
    if parts[0] not in FIELDS or not all(parts):
        raise InputError(f"override {item!r}: unknown config key {parts[0]!r}")
    if len(parts) > 1 and field_type(parts[0]) is not dict:
        raise InputError(f"override {item!r}: {parts[0]} has no nested keys")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    for part in reversed(parts[1:]):  # arch.text.num_layers=2 -> {"text": {"num_layers": 2}}
        value = {part: value}
    return parts, value


def resolve_config(
    config_file: str | os.PathLike | None = None,
    cli: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> TrainConfig:
    """Defaults < YAML file (with its ``base`` chain) < command-line flags < ``key=value``."""
    from lavt.train.finetune import apply_finetune_defaults

    values = load_config_file(config_file) if config_file is not None else {}
    values.update(cli or {})
    for item in overrides:
        parts, value = parse_override(item)
        key = parts[0]
        values[key] = merge(values.get(key), value) if len(parts) > 1 else value
    return TrainConfig.from_dict(apply_finetune_defaults(values))


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML, atomically (reusable with ``--config``)."""
    import yaml

    from lavt.runtime import atomic_write_text

    text = "# resolved config of this run: lavt train --config <this file>\n"
    atomic_write_text(path, text + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
