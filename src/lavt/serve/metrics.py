"""Prometheus metrics of one app (its own registry, so two apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lavt_requests",
            "HTTP requests to the segmentation endpoint, by status code",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lavt_request_latency_seconds",
            "Time from request to response of POST /v1/segment",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lavt_batch_size",
            "Image-expression pairs per model forward",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_length = Gauge(
            "lavt_queue_length", "Requests waiting for the model", registry=self.registry
        )
