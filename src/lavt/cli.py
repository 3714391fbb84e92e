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

from lavt._version import __version__
from lavt.commands.helpformat import use_defaults_help
from lavt.errors import LavtError

log = logging.getLogger("lavt")

DESCRIPTION = (
    "lavt segments the object that an English expression refers to in an image "
    "(LAVT, Yang et al., CVPR 2022): predict with the bundled model or the released "
    "RefCOCO/RefCOCO+/G-Ref weights, evaluate with the published protocol, train, "
    "convert checkpoints and benchmark. 'lavt COMMAND --help' describes each command."
)

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("lavt.commands.predict", "segment the object an expression refers to"),
    "convert": ("lavt.commands.convert", "export a checkpoint to .safetensors"),
    "evaluate": (
        "lavt.commands.evaluate",
        "evaluate on RefCOCO/RefCOCO+/G-Ref (published protocol), gRefCOCO (GRES metrics) or "
        "Refer-YouTube-VOS / Ref-DAVIS17 / A2D-Sentences (--video-protocol)",
    ),
    "synth": (
        "lavt.commands.synth",
        "write a synthetic dataset in the refer layout (--video: moving shapes, Refer-YouTube-VOS)",
    ),
    "data": (
        "lavt.commands.data",
        "import JSONL/COCO/LabelMe annotations as a dataset, or check a dataset",
    ),
    "serve": ("lavt.commands.serve", "HTTP API with dynamic batching and a web page"),
    "train": ("lavt.commands.train", "train LAVT (the published recipe)"),
    "benchmark": (
        "lavt.commands.benchmark",
        "time inference, training, evaluation or data loading",
    ),
    "weights": ("lavt.commands.weights", "released weights by name: list, fetch, path, verify"),
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
    parser = argparse.ArgumentParser(prog="lavt", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    parser.add_argument("--version", action="version", version=f"lavt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in _available_commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    use_defaults_help(parser)  # every --help of every (sub-)command shows its defaults
    return parser


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at each record.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream it was made with, which
    breaks when the CLI runs in-process more than once (tests, notebooks) and the
    caller swaps ``sys.stderr`` in between.
    """

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr (the trainer adds a file handler of its own)."""
    if any(isinstance(h, _CurrentStderrHandler) for h in log.handlers):
        log.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    handler = _CurrentStderrHandler()
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
