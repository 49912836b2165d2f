"""The raw session: the server's backend called directly, cell by cell, each cell time-boxed.

A cell is one warm-up run (a new shape makes the GPU providers allocate and choose kernels), then timed
runs until `seconds` have passed and at least `min_runs` ran, or its deadline came. A cell whose
estimated cost (from the previous cell at the same length) would overrun the deadline is skipped, and
so are the larger ones after it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.backend import TokenBatch, TokenItem
from app.gpu_check import inputs
from app.gpu_check.plan import fair_share, now


@dataclass(frozen=True)
class Timing:
    runs: int
    seconds: float  # the timed runs together
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def per_run(self) -> float:
        return self.seconds / self.runs


def time_runs(run: Callable[[], Any], seconds: float, deadline: float, min_runs: int = 3, max_runs: int = 10_000) -> Timing:
    """Time `run` after one untimed warm-up; at least one timed run, whatever the deadline."""
    run()
    times: list[float] = []
    while True:
        started = now()
        run()
        finished = now()
        times.append(finished - started)
        enough = sum(times) >= seconds and len(times) >= min_runs
        if enough or len(times) >= max_runs or finished >= deadline:
            break
    p50, p90, p99 = (float(np.percentile(times, q)) * 1000 for q in (50, 90, 99))
    return Timing(len(times), float(sum(times)), p50, p90, p99)


@dataclass(frozen=True)
class RawCell:
    model: str
    variant: str
    provider: str
    seq: int
    batch: int
    runs: int
    sequences_per_s: float
    tokens_per_s: float
    p50_ms: float  # one batch
    p90_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Skipped:
    what: str  # e.g. "raw distilbert fp16 seq 512 batch 256"
    reason: str


def run_grid(
    backend: Any, model: str, variant: str, seqs: tuple[int, ...], batches: tuple[int, ...], special: Any,
    vocab_size: int, task: str, cell_s: float, end: float,
) -> tuple[list[RawCell], list[Skipped]]:
    """Every (seq, batch) cell that fits before `end`, each length getting a fair share of the time."""
    provider = backend.info.providers[0]
    mask_id = special.mask.id if task == "fill-mask" and special.mask is not None else None
    cells: list[RawCell] = []
    skipped: list[Skipped] = []
    for index, seq in enumerate(seqs):
        seq_end = fair_share(end, len(seqs) - index)
        previous: RawCell | None = None
        for batch in batches:
            label = f"raw {model} {variant} seq {seq} batch {batch}"
            if previous is not None:
                estimate = 2 * previous.p50_ms / 1000 * batch / previous.batch  # warm-up and one run
                if now() + estimate > seq_end:
                    skipped.append(Skipped(label, f"would not fit its time box (about {estimate:.1f} s)"))
                    continue
            token_batch = inputs.token_batch(batch, seq, special.cls.id, special.sep.id, mask_id, vocab_size)
            try:
                timing = time_runs(lambda: backend.run(token_batch), cell_s, seq_end)
            except Exception as error:  # an out-of-memory at the largest shapes ends this length, not the run
                skipped.append(Skipped(label, f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"))
                break
            previous = RawCell(
                model, variant, provider, seq, batch, timing.runs, batch / timing.per_run, batch * seq / timing.per_run,
                timing.p50_ms, timing.p90_ms, timing.p99_ms,
            )
            cells.append(previous)
    return cells, skipped


@dataclass(frozen=True)
class MixedCell:
    """Mixed-length inputs (STS-B) through a padding backend: how much of the computed work was padding."""

    model: str
    variant: str
    provider: str
    path: str  # "raw" or "http"
    batch: int  # raw: the batch size; http: the mean batch the server formed
    concurrency: int  # http: the clients; raw: 0
    order: str  # raw: "arrival" (shuffled) or "by length" (sorted: the least padding can do)
    sequences_per_s: float
    real_tokens_per_s: float | None  # None over HTTP, where the client does not count tokens
    padding_waste: float  # share of computed tokens that were padding
    p50_ms: float
    errors: int = 0  # http: responses that were not 200


def run_mixed(
    backend: Any, model: str, variant: str, sequences: list[np.ndarray], task: str, batches: tuple[int, ...],
    cell_s: float, end: float,
) -> tuple[list[MixedCell], list[Skipped]]:
    """Batches of STS-B sentences in arrival order and sorted by length, for each batch size."""
    provider = backend.info.providers[0]
    wants = inputs.wants_for(task)
    orders = {"arrival": sequences, "by length": sorted(sequences, key=len)}
    cells: list[MixedCell] = []
    skipped: list[Skipped] = []
    plan = [(batch, order) for batch in batches for order in orders]
    for index, (batch, order) in enumerate(plan):
        cell_end = fair_share(end, len(plan) - index)
        label = f"raw {model} {variant} mixed lengths batch {batch} {order}"
        if cells and now() + 2 * cells[-1].p50_ms / 1000 * batch / cells[-1].batch > cell_end:
            skipped.append(Skipped(label, "would not fit its time box"))
            continue
        ordered = orders[order]
        groups = [ordered[start : start + batch] for start in range(0, len(ordered) - batch + 1, batch)]
        if not groups:
            skipped.append(Skipped(label, f"fewer than {batch} sentences"))
            continue
        prepared = [TokenBatch.of([TokenItem(ids, wants) for ids in group]) for group in groups]
        ran: list[int] = []

        def run() -> None:
            group = len(ran) % len(prepared)
            backend.run(prepared[group])
            ran.append(group)

        timing = time_runs(run, cell_s, cell_end)
        timed = ran[1:]  # the first was the warm-up
        real = sum(int(prepared[group].lengths.sum()) for group in timed)
        padded = sum(int(prepared[group].lengths.max()) * batch for group in timed)
        cells.append(MixedCell(
            model, variant, provider, "raw", batch, 0, order, batch / timing.per_run, real / timing.seconds,
            1 - real / padded, timing.p50_ms,
        ))
    return cells, skipped


# Ops whose inputs are no larger than input_ids are shape bookkeeping, which onnxruntime deliberately
# keeps on the CPU; a larger input means the model's own tensors went through the CPU.
def placement(model_file: Path, providers: list[Any], expected: str, batch: int, seq: int, special: Any, vocab_size: int,
              mask_id: int | None, profile_dir: Path) -> dict[str, Any]:
    """Where onnxruntime ran each node of one batch, from its profiler: node counts per provider, and the
    nodes that ran elsewhere than `expected` with inputs larger than the ids (real fallbacks)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(profile_dir / "placement")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), options, providers=providers)
    token_batch = inputs.token_batch(batch, seq, special.cls.id, special.sep.id, mask_id, vocab_size)
    ids = token_batch.ids.reshape(batch, seq)
    session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    return summarize_placement(events, expected, batch * seq)


def summarize_placement(events: list[dict[str, Any]], expected: str, ids_size: int) -> dict[str, Any]:
    """Node counts per provider, the ops that ran elsewhere than `expected`, those of them with inputs
    larger than the ids (`fallbacks`), and the copies between host and device onnxruntime inserted."""
    by_provider: dict[str, int] = {}
    elsewhere: dict[str, int] = {}
    heavy: list[str] = []
    copies: list[str] = []
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "provider" not in args:
            continue
        provider, op = args["provider"], args.get("op_name", "?")
        by_provider[provider] = by_provider.get(provider, 0) + 1
        largest = max((int(np.prod(next(iter(shape.values())))) for shape in args.get("input_type_shape", [])), default=0)
        described = f"{op} ({event.get('name', '').removesuffix('_kernel_time')}, {largest} elements)"
        if op.startswith("Memcpy"):
            copies.append(described)
        if provider == expected:
            continue
        elsewhere[op] = elsewhere.get(op, 0) + 1
        if largest > ids_size:
            heavy.append(described)
    return {"expected": expected, "nodes_by_provider": by_provider, "ops_elsewhere": elsewhere, "fallbacks": heavy, "copies": copies}
