"""Prometheus collectors, one registry per app (so tests can build several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.batcher import BatchStats
from app.errors import ERROR_TABLE

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
_RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

STAGES = ("tokenization", "queue", "inference", "total")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "distilserve_requests", "HTTP requests by route template and status.", ["route", "status"], registry=r
        )
        self.stage_duration = Histogram(
            "distilserve_stage_duration_seconds",
            "Per-request time in each stage: tokenization, queue, inference, total.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram("distilserve_batch_size", "Inputs per batch.", buckets=_SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram(
            "distilserve_batch_tokens", "Padded tokens per batch (longest x size).", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.real_tokens = Counter(
            "distilserve_batch_real_tokens", "Non-padding tokens inferred (with batch_tokens_sum: padding waste).",
            registry=r,
        )
        self.padding_ratio = Histogram(
            "distilserve_batch_padding_ratio", "Share of a batch's tokens that are padding.", buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.inputs = Counter("distilserve_inputs", "Inputs inferred, by task.", ["task"], registry=r)
        self.queue_depth = Gauge("distilserve_queue_depth", "Inputs waiting in the batcher queue.", registry=r)
        self.failures = Counter("distilserve_failures", "Error responses by error type.", ["error_type"], registry=r)
        self.batch_failures = Counter("distilserve_batch_failures", "Batches whose inference failed.", registry=r)
        self.ready = Gauge("distilserve_ready", "1 when warmed up and the batcher is healthy.", registry=r)
        self.provider = Gauge(
            "distilserve_provider_info", "Execution providers the session actually runs on (rank 0 first).",
            ["provider", "rank"], registry=r,
        )
        self.model = Gauge(
            "distilserve_model_info", "The served model.", ["model_id", "variant", "dtype", "version"], registry=r
        )

        # Children exist from the start so dashboards and rate() see zeros, not gaps.
        for stage in STAGES:
            self.stage_duration.labels(stage)
        for kind in ERROR_TABLE:
            self.failures.labels(kind)
        for task in ("embed", "fill-mask"):
            self.inputs.labels(task)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_tokens.observe(stats.padded_tokens)
        self.real_tokens.inc(stats.real_tokens)
        self.padding_ratio.observe(stats.padding_ratio)
        if stats.failed:
            self.batch_failures.inc()

    def observe_stages(self, tokenization_s: float, queue_s: float, inference_s: float, total_s: float) -> None:
        for stage, seconds in zip(STAGES, (tokenization_s, queue_s, inference_s, total_s), strict=True):
            self.stage_duration.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
