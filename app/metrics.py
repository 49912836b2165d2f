"""Prometheus collectors, one registry per app (so tests can build several apps in one process).

Every collector carries a `model` label (the manifest's model id); `ModelMetrics` is one model's view
with that label bound, which is all a runtime sees. Request-level counters take the model a route
resolved (empty when the request failed before that, e.g. a malformed body).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.batcher import BatchStats
from app.errors import ERROR_TABLE

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
_RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

STAGES = ("tokenization", "queue", "inference", "total")
TASKS = ("embed", "fill-mask", "text-classification", "token-classification")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "distilserve_requests", "HTTP requests by route template, status and model.", ["route", "status", "model"],
            registry=r,
        )
        self.stage_duration = Histogram(
            "distilserve_stage_duration_seconds",
            "Per-request time in each stage: tokenization, queue, inference, total.",
            ["model", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "distilserve_batch_size", "Inputs per batch.", ["model"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "distilserve_batch_tokens", "Tokens computed per batch (longest x size when the backend pads).",
            ["model"], buckets=_TOKEN_BUCKETS, registry=r,
        )
        self.real_tokens = Counter(
            "distilserve_batch_real_tokens", "Non-padding tokens inferred (with batch_tokens_sum: padding waste).",
            ["model"], registry=r,
        )
        self.padding_ratio = Histogram(
            "distilserve_batch_padding_ratio", "Share of a batch's tokens that are padding.", ["model"],
            buckets=_RATIO_BUCKETS, registry=r,
        )
        self.inputs = Counter("distilserve_inputs", "Inputs inferred, by model and task.", ["model", "task"], registry=r)
        self.queue_depth = Gauge("distilserve_queue_depth", "Inputs waiting in the batcher queue.", ["model"], registry=r)
        self.admitted_tokens = Gauge(
            "distilserve_admitted_tokens", "Tokens admitted and not yet answered (tokenizing, queued, running).",
            ["model"], registry=r,
        )
        self.expected_wait = Gauge(
            "distilserve_expected_wait_seconds",
            "Admitted tokens over the measured throughput: how long a new request would wait (max_queue_ms bounds "
            "it; autoscalers read it).",
            ["model"], registry=r,
        )
        self.failures = Counter(
            "distilserve_failures", "Error responses by error type and model.", ["error_type", "model"], registry=r
        )
        self.batch_failures = Counter(
            "distilserve_batch_failures", "Batches whose inference failed.", ["model"], registry=r
        )
        self.ready = Gauge("distilserve_ready", "1 when warmed up and the batcher is healthy.", ["model"], registry=r)
        self.provider = Gauge(
            "distilserve_provider_info", "Execution providers the session actually runs on (rank 0 first).",
            ["model", "provider", "rank"], registry=r,
        )
        self.model = Gauge(
            "distilserve_model_info", "The served models.", ["model", "variant", "dtype", "version"], registry=r
        )
        for kind in ERROR_TABLE:
            self.failures.labels(kind, "")

    def for_model(self, model_id: str) -> ModelMetrics:
        return ModelMetrics(self, model_id)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelMetrics:
    """One model's children of every collector."""

    def __init__(self, metrics: Metrics, model_id: str) -> None:
        self.model_id = model_id
        self.stage_duration = {stage: metrics.stage_duration.labels(model_id, stage) for stage in STAGES}
        self.batch_size = metrics.batch_size.labels(model_id)
        self.batch_tokens = metrics.batch_tokens.labels(model_id)
        self.real_tokens = metrics.real_tokens.labels(model_id)
        self.padding_ratio = metrics.padding_ratio.labels(model_id)
        self.inputs = {task: metrics.inputs.labels(model_id, task) for task in TASKS}
        self.queue_depth = metrics.queue_depth.labels(model_id)
        self.admitted_tokens = metrics.admitted_tokens.labels(model_id)
        self.expected_wait = metrics.expected_wait.labels(model_id)
        self.batch_failures = metrics.batch_failures.labels(model_id)
        self.ready = metrics.ready.labels(model_id)
        self._metrics = metrics
        # Children exist from the start so dashboards and rate() see zeros, not gaps.
        for kind in ERROR_TABLE:
            metrics.failures.labels(kind, model_id)

    def describe_backend(self, variant: str, dtype: str, providers: list[str], version: str) -> None:
        for rank, provider in enumerate(providers):
            self._metrics.provider.labels(self.model_id, provider, str(rank)).set(1)
        self._metrics.model.labels(self.model_id, variant, dtype, version).set(1)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_tokens.observe(stats.padded_tokens)
        self.real_tokens.inc(stats.real_tokens)
        self.padding_ratio.observe(stats.padding_ratio)
        if stats.failed:
            self.batch_failures.inc()

    def observe_stages(self, tokenization_s: float, queue_s: float, inference_s: float, total_s: float) -> None:
        for stage, seconds in zip(STAGES, (tokenization_s, queue_s, inference_s, total_s), strict=True):
            self.stage_duration[stage].observe(seconds)
