"""``lavt serve``: the HTTP API and the web page (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

from lavt.commands.shared_flags import (
    CHECKPOINT_SOURCES,
    add_compile_flag,
    add_dtype_flag,
    add_no_target_flags,
)
from lavt.errors import InputError

log = logging.getLogger("lavt")
API_KEY_ENV = "LAVT_API_KEY"
SERVE_MODULES = ("fastapi", "uvicorn", "multipart", "prometheus_client")
#: GIL switch interval of the server process. Every torch op releases the GIL and
#: takes it back; while the event loop runs Python, the model thread would wait the
#: default 5 ms for each op (the "convoy effect"), which a small model feels most.
SWITCH_INTERVAL_S = 0.0005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"{CHECKPOINT_SOURCES} (default: the bundled model)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_dtype_flag(parser, default="auto")
    add_compile_flag(parser)
    parser.add_argument("--max-batch", type=int, default=16, help="pairs per forward")
    parser.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="longest wait for a batch to fill"
    )
    parser.add_argument("--max-queue", type=int, default=256, help="requests waiting, then 503")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="request body limit")
    parser.add_argument("--max-pixels", type=int, default=4096 * 4096, help="image size limit")
    parser.add_argument("--max-expressions", type=int, default=8, help="texts per request")
    parser.add_argument("--max-text-chars", type=int, default=200, help="characters per text")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a 504")
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="allow browser calls from this origin (repeatable; default: no CORS)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1/* and /metrics (default: "
        f"${API_KEY_ENV}, else none: no authentication); prefer the variable, a flag "
        "shows in the process list",
    )
    parser.add_argument(
        "--metrics-open",
        action="store_true",
        help="with a key, serve /metrics without one (default: /metrics needs the key)",
    )
    parser.add_argument(
        "--model-process",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the model in a child process, beside the HTTP work rather than sharing "
        "its GIL (auto: on for a PyTorch model on the CPU)",
    )
    add_no_target_flags(parser)
    parser.set_defaults(_flags={"request_timeout_s": "--request-timeout"})


def _check_installed() -> None:
    missing = [name for name in SERVE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"lavt serve needs {', '.join(missing)}: pip install 'lavt[serve]'")


def _check_address(host: str, port: int) -> None:
    """Fail early, with one line, when the address cannot be listened on."""
    if not 0 <= port <= 65535:
        raise InputError(f"port {port}: must be in 0..65535", param="port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as err:
        raise InputError(
            f"port {port}: cannot listen on {host}:{port} ({err.strerror or err})", param="port"
        ) from None


def api_key(flag: str | None) -> str | None:
    """The key from ``--api-key``, else ``$LAVT_API_KEY`` (empty: none)."""
    key = flag if flag is not None else os.environ.get(API_KEY_ENV)
    return key or None


def wants_model_process(args: argparse.Namespace, model, device) -> bool:
    """``--model-process``: auto is on for a PyTorch model on the CPU (where the forward's
    Python and the server's share one GIL); off on a GPU and for an exported graph."""
    if args.model_process != "auto":
        return args.model_process == "on"
    return device.type == "cpu" and getattr(model, "runtime", "torch") == "torch"


def run(args: argparse.Namespace) -> int:
    _check_installed()
    import uvicorn

    from lavt.assets import default_model_path
    from lavt.checkpoint import load_model
    from lavt.modeling.no_target import check_rule
    from lavt.precision import check_dtype
    from lavt.runtime import select_device
    from lavt.serve.adapter import ModelAdapter
    from lavt.serve.app import create_app
    from lavt.serve.auth import warn_if_exposed
    from lavt.serve.config import ServeConfig

    _check_address(args.host, args.port)
    check_rule(args.no_target_rule, args.area_threshold)
    config = ServeConfig(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_expressions=args.max_expressions,
        max_text_chars=args.max_text_chars,
        request_timeout_s=args.request_timeout,
        cors_origins=tuple(args.cors_origin),
        api_key=api_key(args.api_key),
        metrics_open=args.metrics_open,
    )
    warn_if_exposed(args.host, config.api_key)
    device = select_device(args.device)
    check_dtype(args.dtype)  # a bad name fails before the model loads
    checkpoint = args.checkpoint if args.checkpoint is not None else default_model_path()
    model = load_model(checkpoint, device=device)
    config = dataclasses.replace(config, model_process=wants_model_process(args, model, device))
    adapter = ModelAdapter(
        model,
        device=device,
        dtype=args.dtype,
        checkpoint=checkpoint,
        no_target_rule=args.no_target_rule,
        area_threshold=args.area_threshold,
    )
    if args.compile:
        from lavt.precision import compile_for_inference

        adapter.model = compile_for_inference(adapter.model)
    app = create_app(adapter, config)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.info(
        "serving %s in %s (%s)%s on http://%s:%d/",
        adapter.name,
        adapter.precision.name,
        adapter.precision.reason,
        ", the model in a child process" if config.model_process else "",
        args.host,
        args.port,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
