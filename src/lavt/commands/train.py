"""``lavt train``: train LAVT with the published recipe (see :mod:`lavt.train`).

Every flag comes from a field of :class:`lavt.train.TrainConfig` (its help, its
default); the reference's spellings (``--splitBy``, ``--model_id``,
``--img_size``, ``--batch_size``) are accepted beside ``--img-size`` and the
others. ``--config file.yaml`` reads a config, and ``key=value`` items anywhere
on the line override any key (``epochs=3 arch.embed_dim=32``). Precedence:
defaults < YAML < flags < ``key=value``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from lavt.train.config import FIELDS, TrainConfig, field_type, resolve_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``lavt train`` flags, one per :class:`TrainConfig` field (``arch`` excepted)."""
    parser.add_argument(
        "--config", metavar="YAML", help="YAML config, see configs/ (default: none)"
    )
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        action=_Overrides,
        metavar="key=value",
        help="override any config key, anywhere among the flags: epochs=3 arch.embed_dim=32",
    )
    groups = {
        name: parser.add_argument_group(f"{name} options")
        for name in ("data", "model", "optimisation", "run")
    }
    for name, f in FIELDS.items():
        kind = field_type(name)
        if kind is dict:
            continue
        primary, aliases = _flags(f)
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=kind, metavar=f.metadata.get("metavar"))
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        group = groups[f.metadata["group"]]
        group.add_argument(primary, help=_help(f, aliases), **kwargs)
        for alias in aliases:  # hidden from the usage line, named in the help text
            group.add_argument(alias, help=argparse.SUPPRESS, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config that the parsed arguments describe."""
    cli = {k: v for k, v in vars(args).items() if k in FIELDS}
    return resolve_config(args.config, cli, args.overrides or [])


def run(args: argparse.Namespace) -> int:
    from lavt.train import main

    summary = main(config_from_args(args))
    if int(os.environ.get("RANK", "0")) == 0:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


class _Overrides(argparse.Action):
    """``key=value`` items anywhere among the flags.

    argparse matches one run of positionals only, so this positional takes the
    rest of the command line (``nargs=REMAINDER``): leading ``key=value`` items
    are kept, and what follows goes back through the parser, which calls this
    action again at the next run of items.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        values = list(values)
        while values and not values[0].startswith("-"):
            items.append(values.pop(0))
        setattr(namespace, self.dest, items)
        if values:
            parser.parse_args(values, namespace)


def _flags(f: dataclasses.Field) -> tuple[str, list[str]]:
    """The flag shown in help, and hidden aliases (the underscore spelling)."""
    primary = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    underscore = "--" + f.name
    return primary, [] if underscore == primary else [underscore]


def _help(f: dataclasses.Field, aliases: list[str]) -> str:
    from lavt.train.finetune import FINETUNE_DEFAULTS, WORD_VOCAB_LR

    default = f.metadata.get("shown", f.default)
    if isinstance(default, bool) or default is None:
        default = {True: "yes", False: "no", None: "none"}[default]
    word_vocab = {"lr": WORD_VOCAB_LR, "text_trainable": "all"}
    if f.name in FINETUNE_DEFAULTS:
        default = f"{default}; with --init-weights {FINETUNE_DEFAULTS[f.name]}"
    elif f.name in word_vocab:
        default = f"{default}; {word_vocab[f.name]} with --init-weights of a word-vocabulary model"
    also = f"; also {', '.join(aliases)}" if aliases else ""
    return f"{f.metadata['help']} (default: {default}{also})".replace("%", "%%")
