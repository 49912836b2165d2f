"""What the check runs: the models, the grid and the time budget, for a GPU host and for a CPU one.

Budgets are shared out as the run goes (`fair_share`): each part gets an equal share of what is left
when it starts, so time one part did not use goes to the next, and a slow part cannot starve the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from model_export.gpu_variants import PACKED, UNFUSED
from model_export.manifest import CPU_PROVIDER, CUDA_PROVIDER

VOCAB_SIZE = 30522  # bert-base-uncased's, which the shipped tokenizer has


@dataclass(frozen=True)
class ModelSpec:
    """A randomly initialised model of a real model's shape."""

    name: str  # the model id in its manifest, on the server and in the report
    kind: str  # "distilbert-mlm" (DistilBertForMaskedLM) or "bert-encoder" (BertModel)
    config: dict[str, int]  # transformers config fields besides the vocabulary
    task: str  # what the HTTP measurements ask of it: "fill-mask" or "embed"

    @property
    def max_length(self) -> int:
        return self.config["max_position_embeddings"]


DISTILBERT_BASE = ModelSpec(
    "distilbert-base-shaped-mlm", "distilbert-mlm",
    {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512}, "fill-mask",
)
# all-MiniLM-L6-v2's shape, with inputs up to 512 tokens (the real one truncates at 256).
MINILM_L6 = ModelSpec(
    "all-minilm-l6-v2-shaped", "bert-encoder",
    {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
     "max_position_embeddings": 512},
    "embed",
)
TINY_MLM = ModelSpec(
    "tiny-distilbert-mlm", "distilbert-mlm",
    {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 128}, "fill-mask",
)
TINY_ENCODER = ModelSpec(
    "tiny-bert-encoder", "bert-encoder",
    {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
     "max_position_embeddings": 128},
    "embed",
)


@dataclass(frozen=True)
class Plan:
    mode: str  # "gpu" or "cpu"
    provider: str  # the execution provider everything must run on
    models: tuple[ModelSpec, ...]
    variants: tuple[str, ...]  # exported; each then gated, measured and served where its provider can run it
    seqs: tuple[int, ...]  # token lengths, special tokens included
    batches: tuple[int, ...]  # raw session batch sizes
    concurrencies: tuple[int, ...]  # HTTP clients, one sequence per request
    mixed_batches: tuple[int, ...]  # raw batch sizes for the mixed-length (STS-B) padding measurement
    mixed_concurrency: int  # HTTP clients for the mixed-length measurement
    budget_s: float  # the whole run, start to report
    raw_cell_s: float  # least timed seconds per raw cell (after one warm-up run)
    http_cell_s: float  # seconds per HTTP cell
    raw_share: float  # of the time left after the exports and gates, the raw session's part
    reserve_s: float  # kept back for stopping servers and writing the report
    intra_op_threads: int  # onnxruntime threads, raw and served (0: one per physical core)
    server_env: dict[str, str] = field(default_factory=dict)  # settings of every server started
    cuda_graph: bool = False  # also measure fp16 with CUDA graphs in the raw session (embedding-only models)

    @property
    def longest(self) -> int:
        return max(self.seqs)


def _powers(low: int, high: int, base: int) -> tuple[int, ...]:
    values = [low]
    while values[-1] * base <= high:
        values.append(values[-1] * base)
    return tuple(values)


def gpu_plan(budget_s: float = 420.0) -> Plan:
    return Plan(
        mode="gpu",
        provider=CUDA_PROVIDER,
        models=(DISTILBERT_BASE, MINILM_L6),
        variants=("fp32", "fp16", UNFUSED, PACKED),
        seqs=(32, 128, 512),
        batches=_powers(1, 256, 2),
        concurrencies=_powers(1, 256, 4),
        mixed_batches=(32, 128),
        mixed_concurrency=64,
        budget_s=budget_s,
        raw_cell_s=0.4,
        http_cell_s=1.5,
        raw_share=0.4,
        reserve_s=20.0,
        intra_op_threads=0,
        cuda_graph=True,
        server_env={
            # Batches as large as the GPU takes: 64 x 512 or 256 x 128 tokens.
            "DISTILSERVE_MAX_BATCH_SIZE": "256",
            "DISTILSERVE_MAX_BATCH_TOKENS": "32768",
            "DISTILSERVE_MAX_QUEUE": "4096",
            # The check measures capacity, not admission: no 429 for a long expected wait.
            "DISTILSERVE_MAX_QUEUE_MS": "60000",
            "DISTILSERVE_STRICT_PROVIDERS": "true",
            "DISTILSERVE_GRACEFUL_SHUTDOWN_TIMEOUT_S": "5",
        },
    )


def cpu_plan(budget_s: float = 45.0) -> Plan:
    return Plan(
        mode="cpu",
        provider=CPU_PROVIDER,
        models=(TINY_MLM, TINY_ENCODER),
        variants=("fp32", "fp16", UNFUSED, PACKED),
        seqs=(32, 128),
        batches=(1, 8),
        concurrencies=(1, 8),
        mixed_batches=(16,),
        mixed_concurrency=8,
        budget_s=budget_s,
        raw_cell_s=0.1,
        http_cell_s=0.4,
        raw_share=0.3,
        reserve_s=3.0,
        intra_op_threads=1,
        server_env={
            "DISTILSERVE_MAX_BATCH_SIZE": "32",
            "DISTILSERVE_MAX_BATCH_TOKENS": "4096",
            "DISTILSERVE_WORKER_THREADS": "1",
            "DISTILSERVE_STRICT_PROVIDERS": "true",
            "DISTILSERVE_GRACEFUL_SHUTDOWN_TIMEOUT_S": "2",
        },
    )


def plan_for(mode: str, real_shapes: bool = False, budget_s: float | None = None) -> Plan:
    """The GPU mode's plan, the CPU mode's tiny one, or the real shapes and grid on the CPU (a baseline,
    and a rehearsal of the GPU run's time-boxing)."""
    if mode == "gpu":
        return gpu_plan(budget_s or 420.0)
    if real_shapes:
        gpu = replace(gpu_plan(budget_s or 420.0), cuda_graph=False)
        # The server's default batch limits: warming up 64 x 512 tokens takes minutes on a few cores.
        cpu_batches = {"DISTILSERVE_MAX_BATCH_SIZE": "32", "DISTILSERVE_MAX_BATCH_TOKENS": "8192"}
        return replace(gpu, mode="cpu", provider=CPU_PROVIDER, server_env={**gpu.server_env, **cpu_batches})
    return cpu_plan(budget_s or 45.0)


def now() -> float:
    return time.perf_counter()


def fair_share(end: float, parts_left: int, at: float | None = None) -> float:
    """When the next of `parts_left` parts sharing the time until `end` must stop, starting `at` (now)."""
    start = now() if at is None else at
    return start + max(0.0, end - start) / max(1, parts_left)


def runs_on(variant: str, provider: str) -> bool:
    """Whether `provider` has kernels for the variant's graph: the packed graph's exist on CUDA only."""
    return variant != PACKED or provider == CUDA_PROVIDER


def served_variants(plan: Plan, exported: list[str]) -> list[str]:
    """The variants a server is started with on the plan's provider: each that it can run, except the
    unfused graph, which is TensorRT's (its server, where TensorRT loads, makes its own choice)."""
    return [variant for variant in exported if variant != UNFUSED and runs_on(variant, plan.provider)]
