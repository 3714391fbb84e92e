"""The FastAPI app: ``POST /v1/segment``, ``/healthz``, ``/v1/model``, ``/metrics``, the page.

Request flow: the body streams through :class:`BodyLimitMiddleware`; the
image is decoded and tokenized in a worker thread; the request joins the
:class:`DynamicBatcher` queue, whose forwards run in its thread or, with
``config.model_process``, in a child process (:mod:`lavt.serve.model_process`);
its logits come back and are turned into masks and the JSON body (again in a
worker thread). The whole request runs under a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import time
from importlib import resources

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lavt.serve.adapter import ModelAdapter, PreparedImage
from lavt.serve.auth import ApiKeyMiddleware
from lavt.serve.batcher import DynamicBatcher, QueueFull
from lavt.serve.config import ServeConfig
from lavt.serve.errors import ApiError, error_response
from lavt.serve.inputs import SegmentRequest, decode_image, read_segment_request
from lavt.serve.limits import BodyLimitMiddleware, BodyTooLarge
from lavt.serve.metrics import Metrics
from lavt.serve.model_process import ModelProcess, start_model_process
from lavt.serve.openapi import install_openapi
from lavt.serve.respond import segment_body

log = logging.getLogger("lavt")


def static_dir() -> str:
    return str(resources.files("lavt.serve") / "static")


def create_app(adapter: ModelAdapter, config: ServeConfig | None = None) -> FastAPI:
    """The app serving ``adapter``'s model under ``config``'s limits."""
    config = config or ServeConfig()
    metrics = Metrics()
    model_process = ModelProcess(adapter) if config.model_process else None
    workers: list[concurrent.futures.ThreadPoolExecutor] = []  # the lifespan's pool
    batcher = DynamicBatcher(
        adapter,
        max_batch=config.max_batch,
        max_wait_s=config.max_wait_ms / 1000.0,
        max_queue=config.max_queue,
        on_batch=metrics.batch_size.observe,
        on_queue=metrics.queue_length.set,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # load_image's bomb check compares against PIL's limit: make it ours (this process).
        Image.MAX_IMAGE_PIXELS = config.max_pixels
        # decoding and mask encoding are short: a few threads suffice, and fewer
        # threads mean fewer malloc arenas and less GIL contention with the model thread
        to_thread.current_default_thread_limiter().total_tokens = config.worker_threads
        # a plain executor for the per-request work: one hop costs the event loop less
        # than anyio's (no capacity limiter, cancel scope or context copy per call)
        workers.append(concurrent.futures.ThreadPoolExecutor(config.worker_threads, "lavt-worker"))
        if model_process is not None:
            batcher.forward = start_model_process(model_process, adapter)
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()
            if model_process is not None:
                model_process.stop()
            workers.pop().shutdown(wait=False)

    app = FastAPI(title="lavt", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model_info() -> dict:
        limits = {
            "max_batch": config.max_batch,
            "max_wait_ms": config.max_wait_ms,
            "max_queue": config.max_queue,
            "max_upload_mb": config.max_upload_mb,
            "max_pixels": config.max_pixels,
            "max_expressions": config.max_expressions,
            "max_text_chars": config.max_text_chars,
            "request_timeout_s": config.request_timeout_s,
        }
        return {**adapter.describe(), "limits": limits}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/segment")
    async def segment(request: Request) -> Response:
        start = time.monotonic()
        deadline = start + config.request_timeout_s
        try:
            response = await asyncio.wait_for(
                _segment(request, deadline), timeout=config.request_timeout_s
            )
        except ApiError as err:
            response = error_response(err.status, err.message, err.headers)
        except BodyTooLarge:  # BodyLimitMiddleware has answered 413 already
            raise
        except asyncio.TimeoutError:
            message = f"no answer within {config.request_timeout_s:g} s (request_timeout_s)"
            response = error_response(504, message)
        except Exception:  # a failed forward or decode: this request fails, the server stays
            log.exception("POST /v1/segment failed")
            response = error_response(500, "internal error while segmenting (see server log)")
        metrics.requests.labels(status=str(response.status_code)).inc()
        metrics.latency.observe(time.monotonic() - start)
        return response

    def _prepare(parsed: SegmentRequest) -> PreparedImage:
        return adapter.prepare(decode_image(parsed.image, parsed.filename), parsed.texts)

    async def _segment(request: Request, deadline: float) -> Response:
        parsed: SegmentRequest = await read_segment_request(request, config)
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(workers[-1], _prepare, parsed)
        try:
            job = batcher.submit(prepared, deadline)
        except QueueFull as err:
            message = f"server busy: {err}; retry later"
            raise ApiError(503, message, headers={"Retry-After": "1"}) from None
        try:
            outputs = await asyncio.wrap_future(job.future)  # (E, 2, S, S), (E, 2) or None
        except asyncio.CancelledError:
            batcher.cancel(job)
            raise
        body = await loop.run_in_executor(
            workers[-1],
            functools.partial(segment_body, return_png=parsed.return_png),
            adapter,
            outputs,
            prepared,
        )  # masks, RLE/PNG and JSON text, all off the event loop
        return Response(body, media_type="application/json")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(f"{static_dir()}/index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.max_upload_bytes,
        on_refuse=metrics.requests.labels(status="413").inc,
    )
    if config.api_key is not None:  # outside the body limit: no key, no body read
        app.add_middleware(
            ApiKeyMiddleware, api_key=config.api_key, metrics_open=config.metrics_open
        )
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    install_openapi(app, config)
    return app
