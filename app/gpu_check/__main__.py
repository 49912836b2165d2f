"""`python -m app.gpu_check --out DIR`: the GPU path end to end, measured, in one time-boxed command.

With onnxruntime-gpu and a visible GPU: DistilBERT-base- and all-MiniLM-L6-v2-shaped models (random
weights), exported fp32 and fp16, gated again on CUDA against torch; the real server on CUDA (and on
TensorRT where it is installed), its providers and IO binding asserted from /info; raw session and HTTP
throughput and latency over the sequence-length x batch / concurrency grid; padding waste on STS-B.
Elsewhere: the same on the CPU provider with tiny models and a tiny grid, in under a minute.

Writes gpu-check.json, gpu-check.md and servers.log to DIR; exit 0 when every check passed, 1 when one
failed (the numbers are still written), 2 when the mode asked for is not available. docs/gpu.md says how
to run it on a GPU host.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from app.gpu_check.plan import ModelSpec, Plan, fair_share, now, plan_for, runs_on, served_variants
from app.gpu_check.report import Report

if TYPE_CHECKING:
    from app.gpu_check.serving import ServerRun

SERVER_LOG = "servers.log"


def say(message: str) -> None:
    print(f"[gpu-check] {message}", flush=True)


@dataclass(frozen=True)
class Built:
    spec: ModelSpec
    checkpoint: Path
    model_dir: Path
    variants: list[str]


@contextmanager
def phase(report: Report, name: str, out: Path) -> Iterator[None]:
    started = now()
    say(f"{name} ...")
    try:
        yield
    finally:
        report.phases[name] = round(now() - started, 1)
        report.save(out)
        say(f"{name}: {report.phases[name]:.1f} s")


def preflight(plan: Plan, report: Report) -> bool:
    from app.gpu_check import host

    result = host.preflight(host.providers_for(plan.provider), host.child_env())
    active = result.get("active") or []
    passed = bool(active) and active[0] == plan.provider and bool(result.get("ran"))
    detail = f"active {active}" + (f"; {result['error']}" if result.get("error") else "")
    return report.check(f"preflight: a bare process runs a session on {plan.provider}", passed, detail)


def build(plan: Plan, work: Path, report: Report) -> list[Built]:
    from app.gpu_check import models

    built = []
    for spec in plan.models:
        try:
            checkpoint = models.build_checkpoint(spec, work / "checkpoints" / spec.name)
            variants = models.export(spec, checkpoint, work / "models" / spec.name, plan.variants, say)
        except Exception as error:  # an export that fails (fusion, every gate missed) drops this model, not the run
            report.check(f"export {spec.name}", False, _one_line(error))
            continue
        missing = [name for name in plan.variants if name not in variants]
        report.check(f"export {spec.name}", not missing, f"written and gated on the CPU: {', '.join(variants)}"
                     + (f"; missed their gate: {', '.join(missing)}" if missing else ""))
        built.append(Built(spec, checkpoint, work / "models" / spec.name, variants))
    return built


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def gates(plan: Plan, built: list[Built], report: Report) -> None:
    import torch

    from app.gpu_check import models
    from app.providers import provider_options

    device = "cuda" if plan.mode == "gpu" and torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference in exact fp32, as onnxruntime's fp32 gates run
    providers = [(name, provider_options(name)) for name in _providers(plan)]
    for item in built:
        _skip_off_provider(plan, report, item, "parity")
        variants = [variant for variant in item.variants if runs_on(variant, plan.provider)]
        try:
            results = models.gate_on(item.checkpoint, item.model_dir, variants, providers, device)
        except Exception as error:  # e.g. the session fell back to the CPU: the gate refuses to pass there
            report.check(f"parity on {plan.provider} vs torch on {device}: {item.spec.name}", False, _one_line(error))
            continue
        for result in results:
            report.gates.append(result)
            report.check(f"parity {result.variant} on {result.provider} vs torch on {device}: {result.model}",
                         not result.failures, f"{'; '.join(result.failures) or result.gate}: {result.summary}")
    if device == "cuda":
        torch.cuda.empty_cache()


def _skip_off_provider(plan: Plan, report: Report, item: Built, what: str) -> None:
    """Record each exported variant the plan's provider has no kernels for (the packed graph off CUDA)."""
    for variant in item.variants:
        if not runs_on(variant, plan.provider):
            report.skipped.append(_skipped(f"{item.spec.name} {variant}: {what}", f"no kernels on {plan.provider}; needs CUDA"))


def _providers(plan: Plan) -> list[str]:
    from app.gpu_check import host

    return host.providers_for(plan.provider)


CUDA_GRAPH = "+cuda-graph"  # the label of fp16 run with CUDA graphs, a measured option


def raw_jobs(plan: Plan, built: list[Built]) -> list[tuple[Built, str]]:
    """(model, variant label) for each raw session: the variants the servers load (the unfused graph is
    TensorRT's, measured by its server), then fp16 with CUDA graphs on the embedding-only models."""
    jobs = [(item, variant) for item in built for variant in served_variants(plan, item.variants)]
    if plan.cuda_graph:  # kept only if it pays: measured beside plain fp16
        jobs += [(item, "fp16" + CUDA_GRAPH) for item in built if item.spec.task == "embed" and "fp16" in item.variants]
    return jobs


def raw(plan: Plan, built: list[Built], report: Report, work: Path, end: float) -> None:
    jobs = raw_jobs(plan, built)
    for item in built:
        _skip_off_provider(plan, report, item, "raw session")
    for index, (item, variant) in enumerate(jobs):
        try:
            _raw_job(plan, item, variant, report, work, fair_share(end, len(jobs) - index))
        except Exception as error:  # a provider that will not start, or a profile that fails: this job only
            if variant.endswith(CUDA_GRAPH):  # an option under trial: its refusal is a finding, not a broken path
                report.skipped.append(_skipped(f"raw session {item.spec.name} {variant}", f"failed: {_one_line(error)}"))
            else:
                report.check(f"raw session {item.spec.name} {variant} on {plan.provider}", False, _one_line(error))
        gc.collect()


def _skipped(what: str, reason: str):  # noqa: ANN202 - raw.Skipped, imported late like the rest
    from app.gpu_check.raw import Skipped

    return Skipped(what, reason)


def _raw_job(plan: Plan, item: Built, label: str, report: Report, work: Path, end: float) -> None:
    """Placement, the grid, then the mixed lengths, for one model and variant (`label`: the variant, with
    +cuda-graph for the CUDA-graph trial), until `end`."""
    from app import bench
    from app.model_config import ModelOptions

    variant, cuda_graph = label.removesuffix(CUDA_GRAPH), label.endswith(CUDA_GRAPH)
    options = ModelOptions(
        providers=_providers(plan), strict_providers=True, variant=variant, intra_op_threads=plan.intra_op_threads,
        max_batch_size=max(plan.batches), max_batch_tokens=max(plan.batches) * plan.longest, cuda_graph=cuda_graph,
    )
    backend, manifest, _ = bench.open_backend(item.model_dir, options, work / "tensorrt")
    special = manifest.special_tokens
    mask_id = special.mask.id if item.spec.task == "fill-mask" and special.mask else None
    if not cuda_graph:  # the same graph as plain fp16, whose placement is checked already
        _placement(plan, item, variant, manifest, report, work, mask_id)
    _raw_cells(plan, item, label, backend, manifest, report, end)


def _placement(plan: Plan, item: Built, variant: str, manifest, report: Report, work: Path, mask_id: int | None) -> None:  # noqa: ANN001
    from app.gpu_check import raw as rawmod
    from app.providers import provider_options

    name = f"{item.spec.name} {variant}"
    special, vocab = manifest.special_tokens, manifest.arch.vocab_size
    where = rawmod.placement(
        item.model_dir / manifest.variant(variant).file, [(p, provider_options(p)) for p in _providers(plan)],
        plan.provider, 4, min(64, manifest.max_length), special, vocab, mask_id, work,
    )
    report.placements.append({"model": item.spec.name, "variant": variant, **where})
    detail = "; ".join(where["fallbacks"]) or (
        f"nodes {where['nodes_by_provider']}, elsewhere {where['ops_elsewhere'] or 'none'}, copies {len(where['copies'])}"
        if where["nodes_by_provider"] else "the profiler listed no nodes"
    )
    report.check(f"placement {name}: no model tensor leaves {plan.provider}",
                 bool(where["nodes_by_provider"]) and not where["fallbacks"], detail)


def _raw_cells(plan: Plan, item: Built, label: str, backend, manifest, report: Report, end: float) -> None:  # noqa: ANN001
    """The grid, then the mixed lengths, until `end`; the cells carry `label` as their variant."""
    from app.gpu_check import inputs
    from app.gpu_check import raw as rawmod

    special, vocab = manifest.special_tokens, manifest.arch.vocab_size
    seqs = tuple(seq for seq in plan.seqs if seq <= manifest.max_length)
    cells, skipped = rawmod.run_grid(backend, item.spec.name, label, seqs, plan.batches, special, vocab,
                                     item.spec.task, plan.raw_cell_s, now() + (end - now()) * 0.75)
    report.raw += cells
    report.skipped += skipped
    texts = inputs.mixed_sentences(item.spec.task, special.mask.token if special.mask else None)
    sequences = inputs.encode_mixed(item.model_dir / manifest.tokenizer_file, texts, manifest.max_length)
    mixed, skipped = rawmod.run_mixed(backend, item.spec.name, label, sequences, item.spec.task, plan.mixed_batches,
                                      plan.raw_cell_s, end)
    report.mixed += mixed
    report.skipped += skipped


def server_runs(plan: Plan, variants: list[str], tensorrt: bool) -> list[ServerRun]:
    """One server per variant every model has that the plan's provider serves; and, where TensorRT loads,
    one that leaves the choice to the server, which must pick the unfused graph (fp32 without one)."""
    from model_export.gpu_variants import UNFUSED
    from model_export.manifest import CUDA_PROVIDER, TENSORRT_PROVIDER

    from app.gpu_check import host
    from app.gpu_check.serving import ServerRun

    runs = [
        ServerRun(f"{variant} on {plan.provider}", plan.provider, variant, host.providers_for(plan.provider),
                  io_binding=plan.provider == CUDA_PROVIDER)
        for variant in served_variants(plan, variants)
    ]
    if plan.mode == "gpu" and tensorrt:
        # TensorRT builds its own fp16 engine from the fp32 graph, whole when it has no contrib ops.
        expected = UNFUSED if UNFUSED in variants else "fp32"
        runs.append(ServerRun(f"server's choice on TensorRT ({expected})", TENSORRT_PROVIDER, None,
                              host.providers_for(TENSORRT_PROVIDER), io_binding=False, expected_variant=expected))
    return runs


def http(plan: Plan, built: list[Built], report: Report, work: Path, end: float, log: IO[str]) -> None:
    from model_export.manifest import read_manifest

    from app.gpu_check import host, serving

    model_inputs = []
    for item in built:
        manifest = read_manifest(item.model_dir)
        mask = manifest.special_tokens.mask.token if manifest.special_tokens.mask else None
        model_inputs.append(serving.model_input(item.spec.name, item.spec.task, item.model_dir / manifest.tokenizer_file,
                                                mask, manifest.max_length, plan.seqs))
    variants = [variant for variant in plan.variants if all(variant in item.variants for item in built)]
    runs = server_runs(plan, variants, bool(report.environment.get("tensorrt")))
    for index, run in enumerate(runs):
        env = host.child_env(serving.server_env(plan, run, work / "cache"))
        info, cells, mixed, skipped = serving.measure_server(
            plan, run, [item.model_dir for item in built], model_inputs, env, fair_share(end, len(runs) - index), log,
        )
        report.servers.append({"label": run.label, "provider": run.provider, "variant": run.variant,
                               "info": {key: info.get(key) for key in ("error", "version", "models") if key in info}})
        report.http += cells
        report.mixed += mixed
        report.skipped += skipped
        if "error" in info:
            report.check(f"server {run.label}", False, f"{info['error']} (see {SERVER_LOG})")
        if "models" not in info:
            continue
        problems = serving.info_problems(info, run, [item.spec.name for item in built])
        found = "; ".join(
            f"{m['model_id']}: {m['variant']} on {(m['providers'] or ['nothing'])[0]}, io_binding {m['io_binding']}"
            for m in info["models"]
        )
        report.check(f"server {run.label}: /info providers, variant, IO binding", not problems, "; ".join(problems) or found)
        errors = sum(cell.errors for cell in cells) + sum(cell.errors for cell in mixed)
        answered = sum(cell.requests + cell.errors for cell in cells)
        report.check(f"server {run.label}: every response 200", errors == 0, f"{errors} errors; {answered} grid requests")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-check.json, gpu-check.md and servers.log")
    parser.add_argument("--mode", choices=("auto", "gpu", "cpu"), default="auto",
                        help="gpu: fail unless onnxruntime-gpu and a GPU are there; auto: gpu where they are, else cpu")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default: 420 with the real shapes, 45 with the tiny ones)")
    parser.add_argument("--real-shapes", action="store_true",
                        help="CPU mode: the GPU mode's models and grid instead of the tiny ones (a CPU baseline)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for checkpoints and exports (default: a temporary one, removed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = now()
    args = parse(argv)
    import torch  # noqa: F401  (first: onnxruntime-gpu then uses the CUDA libraries torch loaded)
    import transformers

    transformers.utils.logging.disable_progress_bar()  # one bar per saved or loaded model would bury the log

    from app.gpu_check import host

    mode, why = host.choose_mode(args.mode)
    if mode is None:
        print(f"gpu-check: {why}", file=sys.stderr)
        return 2
    plan = plan_for(mode, args.real_shapes, args.budget)
    end = started + plan.budget_s
    say(f"{mode} mode ({why}); budget {plan.budget_s:.0f} s; results in {args.out}")
    report = Report(environment=host.describe(mode, why), plan=asdict(plan))
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        with open(out / SERVER_LOG, "w") as log:
            with phase(report, "preflight", out):
                ready = preflight(plan, report)
            if ready:
                with phase(report, "export", out):
                    built = build(plan, work, report)
                ready = bool(built)
            if ready:
                with phase(report, "gates", out):
                    gates(plan, built, report)
                left = end - plan.reserve_s - now()
                with phase(report, "raw", out):
                    raw(plan, built, report, work, now() + left * plan.raw_share)
                with phase(report, "http", out):
                    http(plan, built, report, work, end - plan.reserve_s, log)
        took = now() - started
        report.check("time: the run fits its budget", took <= plan.budget_s, f"{took:.0f} s of {plan.budget_s:.0f} s")
        report.finished = True
        report.save(out)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [check.name for check in report.checks if not check.passed]
    say(f"{'passed' if report.passed else 'FAILED: ' + '; '.join(failed)}; {len(report.raw)} raw, {len(report.http)} HTTP, "
        f"{len(report.mixed)} mixed-length cells, {len(report.skipped)} skipped; {out / 'gpu-check.md'}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
