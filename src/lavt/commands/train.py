"""``lavt train``: train LAVT with the published recipe (LAVT_SPEC section 6).

Flags follow the reference README (``--model --dataset --splitBy --model_id
--batch-size --lr --wd --epochs --img_size --swin_type --pretrained_swin_weights
--resume``); ``--config file.yaml`` reads a config and trailing ``key=value``
items override anything (``epochs=3 arch.embed_dim=32``). Precedence: defaults <
YAML < flags < ``key=value``. See :mod:`lavt.engine.train` for the torchrun
commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lavt.engine.losses import LOSSES
from lavt.engine.train import AMP_DTYPES
from lavt.modeling.config import PRESETS, VARIANTS

S = argparse.SUPPRESS  # only flags given on the command line override the config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML config (see configs/)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=3"
    )
    ref = parser.add_argument_group("reference flags")
    ref.add_argument("--model", choices=VARIANTS, default=S, help="lavt or lavt_one")
    ref.add_argument("--dataset", default=S, help="refcoco, refcoco+, refcocog, synthetic, ...")
    ref.add_argument("--splitBy", default=S, help="unc, umd or google")
    ref.add_argument("--model_id", default=S, help="run name: the run directory's name")
    ref.add_argument("--batch-size", dest="batch_size", type=int, default=S, help="per process")
    ref.add_argument("--lr", type=float, default=S)
    ref.add_argument("--wd", type=float, default=S, help="weight decay")
    ref.add_argument("--epochs", type=int, default=S)
    ref.add_argument("--img_size", type=int, default=S)
    ref.add_argument("--swin_type", choices=PRESETS, default=S)
    ref.add_argument(
        "--window12",
        action="store_true",
        default=S,
        help="window 12 (default: 12 if the Swin weights' name says window12, else 7)",
    )
    ref.add_argument("--mha", default=S, help="PWAM heads per stage, a-b-c-d")
    ref.add_argument("--pretrained_swin_weights", default=S, help="official Swin ImageNet .pth")
    ref.add_argument(
        "--resume", default=S, metavar="auto|PATH", help="auto: continue from the run's last.pt"
    )
    new = parser.add_argument_group("data, model and run")
    new.add_argument("--data-root", dest="data_root", default=S, help="refer data root")
    new.add_argument("--output-dir", dest="output_dir", default=S, help="parent of run dirs")
    new.add_argument(
        "--text-encoder", dest="text_encoder", default=S, help="BERT: HF name or local dir"
    )
    new.add_argument(
        "--init-weights",
        dest="init_weights",
        default=S,
        metavar="PATH",
        help="fine-tune: start from a LAVT checkpoint's weights (same architecture)",
    )
    new.add_argument(
        "--text-trainable",
        dest="text_trainable",
        default=S,
        metavar="all|none|A-B",
        help="trained BERT parts (default 0-9: encoder layers 0-9; embeddings frozen)",
    )
    new.add_argument("--drop-path", dest="drop_path", type=float, default=S)
    new.add_argument("--loss", choices=LOSSES, default=S)
    new.add_argument("--warmup-iters", dest="warmup_iters", type=int, default=S)
    new.add_argument("--amp", choices=tuple(AMP_DTYPES), default=S)
    new.add_argument("--grad-accum", dest="grad_accum", type=int, default=S)
    new.add_argument(
        "--grad-checkpointing", dest="grad_checkpointing", action="store_true", default=S
    )
    new.add_argument("--compile", action="store_true", default=S, help="torch.compile")
    new.add_argument("--channels-last", dest="channels_last", action="store_true", default=S)
    new.add_argument("--workers", type=int, default=S, help="data loader workers per process")
    new.add_argument("--seed", type=int, default=S)
    new.add_argument("--device", default=S, help="auto (default), cpu, cuda, cuda:1")
    new.add_argument("--threads", type=int, default=S, help="torch CPU threads per process")
    new.add_argument(
        "--max-nonfinite",
        dest="max_nonfinite",
        type=int,
        default=S,
        metavar="K",
        help="stop after K non-finite losses in a row (0: never)",
    )
    new.add_argument(
        "--checkpoint-every",
        dest="checkpoint_every",
        type=int,
        default=S,
        metavar="N",
        help="also write last.pt every N steps inside an epoch",
    )
    new.add_argument("--log-every", dest="log_every", type=int, default=S, metavar="N")
    new.add_argument("--val-every", dest="val_every", type=int, default=S, metavar="EPOCHS")
    new.add_argument(
        "--no-progress", dest="progress", action="store_false", default=S, help="no progress bar"
    )


def run(args: argparse.Namespace) -> int:
    from lavt.engine.train import DEFAULTS, main, resolve_config

    cli = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    cfg = resolve_config(args.config, cli, args.overrides)
    summary = main(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0
