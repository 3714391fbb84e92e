"""The ``lavt`` command line: a thin layer over the Python API.

Each subcommand lives in ``lavt.commands.<name>`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only
when their subcommand runs, so ``lavt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from lavt.errors import LavtError

log = logging.getLogger("lavt")

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("lavt.commands.predict", "segment the object an expression refers to"),
    "convert": ("lavt.commands.convert", "export a checkpoint to .safetensors"),
    "evaluate": (
        "lavt.commands.evaluate",
        "evaluate on RefCOCO/RefCOCO+/G-Ref (published protocol)",
    ),
    "synth": ("lavt.commands.synth", "write a synthetic dataset in the refer layout"),
    "train": ("lavt.commands.train", "train LAVT (the published recipe)"),
    "benchmark": (
        "lavt.commands.benchmark",
        "time inference, training, evaluation or data loading",
    ),
    "export": ("lavt.commands.export", "export a checkpoint as one ONNX graph (BERT included)"),
}


def _available_commands() -> dict[str, tuple[str, str]]:
    return {
        name: spec
        for name, spec in COMMANDS.items()
        if importlib.util.find_spec(spec[0]) is not None
    }


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="lavt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in _available_commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr (the trainer adds a file handler of its own)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except LavtError as err:
        flags = getattr(args, "_flags", None)
        print(f"lavt {args.command}: error: {err.message_for_cli(flags)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"lavt {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"lavt {args.command}: error: out of memory", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
