"""The real server: `python -m app --model-dir A --model-dir B` in a subprocess, checked through /info,
then driven over HTTP one sequence per request (app.bench's client), cell by cell."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app import bench
from app.gpu_check import inputs
from app.gpu_check.plan import Plan, fair_share, now
from app.gpu_check.raw import MixedCell, Skipped


@dataclass(frozen=True)
class ServerRun:
    """One server start: every model on `provider`, each loading `variant` (None: the server's choice)."""

    label: str
    provider: str
    variant: str | None
    providers: list[str]  # as requested
    io_binding: bool  # what /info must say
    expected_variant: str | None = None  # with variant None: what the server must choose


@dataclass(frozen=True)
class HttpCell:
    model: str
    variant: str
    provider: str
    server: str
    seq: int
    concurrency: int
    requests: int
    errors: int  # responses that were not 200
    sequences_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_batch: float
    client_cpu: float  # share of one core the client process used: near 1, the client is the limit


@dataclass(frozen=True)
class ModelInput:
    """What the HTTP cells send to one model."""

    name: str
    task: str
    fixed: dict[int, list[bytes]]  # request bodies by token length
    mixed: list[bytes]  # STS-B sentences


def server_env(plan: Plan, run: ServerRun, cache_dir: Path) -> dict[str, str]:
    env = dict(plan.server_env)
    env["DISTILSERVE_PROVIDERS"] = ",".join(run.providers)
    env["DISTILSERVE_CACHE_DIR"] = str(cache_dir)
    env["DISTILSERVE_INTRA_OP_THREADS"] = str(plan.intra_op_threads)
    if run.variant is not None:
        env["DISTILSERVE_VARIANT"] = run.variant
    return env


def info_problems(info: dict[str, Any], run: ServerRun, expected_models: list[str]) -> list[str]:
    """What /info shows that the run did not ask for, in words; empty when everything is where it should be."""
    problems = []
    models = {model["model_id"]: model for model in info.get("models", [])}
    for name in expected_models:
        model = models.get(name)
        if model is None:
            problems.append(f"{name}: not served")
            continue
        active = model.get("providers", [])
        if not active or active[0] != run.provider:
            problems.append(f"{name}: runs on {active}, not {run.provider} (fell back)")
        wanted = run.variant or run.expected_variant
        if wanted is not None and model.get("variant") != wanted:
            problems.append(f"{name}: variant {model.get('variant')}, not {wanted}")
        if model.get("io_binding") is not run.io_binding:
            problems.append(f"{name}: io_binding {model.get('io_binding')}, expected {run.io_binding}")
    return problems


def measure_server(
    plan: Plan, run: ServerRun, model_dirs: list[Path], models: list[ModelInput], env: dict[str, str], end: float,
    log: IO[str],
) -> tuple[dict[str, Any], list[HttpCell], list[MixedCell], list[Skipped]]:
    """Start the server, read /info, then every (model, seq, concurrency) cell and one mixed-length cell per
    model that fit before `end`. Returns /info (or {"error": ...}), the cells and what was skipped."""
    import httpx

    cells: list[HttpCell] = []
    mixed: list[MixedCell] = []
    skipped: list[Skipped] = []
    log.write(f"\n===== server {run.label}: {' '.join(f'{k}={v}' for k, v in sorted(env.items()))}\n")
    log.flush()
    info: dict[str, Any] = {}
    try:
        with bench.running_server(model_dirs, env, ready_timeout=max(5.0, end - now()), log=log) as server:
            info = httpx.get(server.url + "/info", timeout=30).json()
            variants = {model["model_id"]: model["variant"] for model in info.get("models", [])}
            for index, model in enumerate(models):
                model_end = fair_share(end, len(models) - index)
                path = "/embed" if model.task == "embed" else "/fill-mask"
                variant = variants.get(model.name, run.variant or "?")
                grid_end = model_end - (model_end - now()) * 0.15  # the rest: the mixed-length cell
                cells += _grid(plan, run, server, model, path, variant, grid_end, skipped)
                if now() + plan.http_cell_s <= model_end:
                    row, errors = bench.measure_http(server, path, model.mixed, plan.mixed_concurrency, plan.http_cell_s)
                    mixed.append(MixedCell(
                        model.name, variant, run.provider, "http", round(row.mean_batch), plan.mixed_concurrency, "arrival",
                        row.throughput, None, row.padding_waste, row.p50_ms, errors,
                    ))
                else:
                    skipped.append(Skipped(f"http {run.label} {model.name} mixed lengths", "out of time"))
    except Exception as error:  # a server that will not start, or dies mid-run, ends this run with what it measured
        detail = str(error) if isinstance(error, bench.ServerError) else f"{type(error).__name__}: {error}"
        return {**info, "error": detail.splitlines()[0] if detail else type(error).__name__}, cells, mixed, skipped
    return info, cells, mixed, skipped


def _grid(
    plan: Plan, run: ServerRun, server: bench.Server, model: ModelInput, path: str, variant: str, end: float,
    skipped: list[Skipped],
) -> list[HttpCell]:
    cells = []
    for index, seq in enumerate(plan.seqs):
        seq_end = fair_share(end, len(plan.seqs) - index)
        bodies = model.fixed.get(seq)
        if bodies is None:
            skipped.append(Skipped(f"http {run.label} {model.name} seq {seq}", "longer than the model's max_length"))
            continue
        # Connections and this shape warmed up before the first timed cell.
        asyncio.run(bench.drive(server.port, path, bodies, 4, min(0.5, plan.http_cell_s / 2)))
        for concurrency in plan.concurrencies:
            label = f"http {run.label} {model.name} seq {seq} concurrency {concurrency}"
            duration = min(plan.http_cell_s, seq_end - now())
            if duration < plan.http_cell_s / 3:
                skipped.append(Skipped(label, "out of time"))
                continue
            cpu_started, started = time.process_time(), now()
            row, errors = bench.measure_http(server, path, bodies, concurrency, duration)
            client_cpu = (time.process_time() - cpu_started) / max(now() - started, 1e-9)
            cells.append(HttpCell(
                model.name, variant, run.provider, run.label, seq, concurrency, row.requests, errors, row.throughput,
                row.p50_ms, row.p90_ms, row.p99_ms, row.mean_batch, round(client_cpu, 2),
            ))
    return cells


def model_input(name: str, task: str, tokenizer_file: Path, mask_token: str | None, max_length: int,
                seqs: tuple[int, ...], count: int = 256) -> ModelInput:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    mask = mask_token if task == "fill-mask" else None
    fixed = {
        seq: inputs.request_bodies(inputs.exact_length_texts(tokenizer, seq, count, mask, seed=seq), task, name)
        for seq in seqs if seq <= max_length
    }
    mixed = inputs.request_bodies(inputs.mixed_sentences(task, mask_token), task, name)
    return ModelInput(name, task, fixed, mixed)
