"""`make bench`: everything compared in one run, on the shipped mixed-length text set."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path
from typing import Any

from app.bench import inprocess
from app.bench.http import ServerError, drive, measure_http, running_server
from app.bench.report import EMBED, FILL_MASK, Section, document, render, render_summary
from app.bench.texts import as_task, length_stats, load_bench_texts

QUICK_DURATION = 1.5
QUICK_TEXTS = 240


def default_model_dir(task: str) -> Path:
    """The directory the server would answer `task` from without a model_dir: the first that serves it."""
    from model_export.manifest import read_manifest

    from app.server import select_models
    from app.settings import Settings

    paths = [Path(selection.path) for selection in select_models(Settings())]
    return next((path for path in paths if task in read_manifest(path).tasks), paths[0])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__)
    parser.add_argument("model_dir", nargs="?", type=Path,
                        help="the embedding model directory (default: the server's choice for embeddings)")
    parser.add_argument("--fill-mask-model-dir", type=Path, default=None,
                        help="the fill-mask model (default: MODEL_DIR when it serves fill-mask; without MODEL_DIR, the server's choice)")
    parser.add_argument("--no-fill-mask", action="store_true", help="skip the fill-mask comparison")
    parser.add_argument("--concurrency", default="1,8,32,128", help="comma-separated client concurrencies")
    parser.add_argument("--request-sentences", type=int, default=32, help="sentences per request in the batched-request load (0: skip it)")
    parser.add_argument("--request-concurrency", type=int, default=8, help="clients in the batched-request load")
    parser.add_argument("--fill-mask-concurrency", type=int, default=8, help="clients in the fill-mask load")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 20; --quick: 1.5)")
    parser.add_argument("--texts", type=int, default=None, help="use only the first N texts (default all; --quick: 240)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short measurements on fewer texts")
    parser.add_argument("--no-peers", action="store_true", help="skip sentence-transformers and transformers' pipeline")
    parser.add_argument("--infinity", nargs="?", const="infinity_emb", default=None, metavar="EXECUTABLE",
                        help="also drive Infinity (infinity_emb v2, from its own virtual environment) on the same load")
    parser.add_argument("--json", type=Path, default=None, help="write the results here, and the PNG beside it")
    args = parser.parse_args(argv)
    args.duration = args.duration or (QUICK_DURATION if args.quick else 20.0)
    args.texts = args.texts or (QUICK_TEXTS if args.quick else None)
    args.concurrency = [int(part) for part in args.concurrency.split(",")]
    return args


def fill_mask_dir(args: argparse.Namespace, embed_dir: Path) -> Path | None:
    from model_export.manifest import read_manifest

    if args.no_fill_mask:
        return None
    if args.fill_mask_model_dir:
        return args.fill_mask_model_dir
    if args.model_dir:
        return embed_dir if FILL_MASK in read_manifest(embed_dir).tasks else None
    return default_model_dir(FILL_MASK)


def environment(served: inprocess.Served, args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime

    settings = served.settings
    return {
        "providers": served.backend.info.providers,
        "intra_op_threads": settings.intra_op_threads,
        "max_batch_size": settings.max_batch_size,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_wait_ms": settings.max_wait_ms,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "duration_s": args.duration,
        "quick": args.quick,
    }


def peer_row(skipped: dict[str, str], name: str, checkpoint: Path | None, measure: Any) -> list[Any]:
    """A torch peer's row, or a note in `skipped` saying why there is none."""
    if checkpoint is None:
        skipped[name] = "the checkpoint the model was exported from is not on this machine"
        return []
    try:
        return [measure(checkpoint)]
    except ImportError as error:
        skipped[name] = f"not installed: {error}"
        return []


def embed_section(model_dir: Path, texts: list[str], args: argparse.Namespace, skipped: dict[str, str]
                  ) -> tuple[Section, inprocess.Served]:
    served = inprocess.open_served(model_dir, EMBED, texts)
    if EMBED not in served.manifest.tasks:
        raise SystemExit(f"bench: {model_dir} does not serve embeddings (tasks: {served.manifest.tasks})")
    section = Section(EMBED, served.manifest.model_id, served.backend.info.variant, inprocess.ceiling_row(served, args.duration))
    section.rows += inprocess.raw_rows(served, args.duration)
    if not args.no_peers:
        section.rows += peer_row(skipped, "sentence-transformers", inprocess.checkpoint_of(served.manifest),
                                 lambda path: inprocess.sentence_transformers_row(path, texts, args.duration, served.threads))
    return section, served


def fill_mask_section(model_dir: Path, texts: list[str], args: argparse.Namespace, skipped: dict[str, str]
                      ) -> tuple[Section, list[str]]:
    """The fill-mask model's ceiling and transformers' pipeline, on the masked texts that fit unshortened
    (a fill-mask request is not truncated)."""
    from model_export.manifest import read_manifest

    manifest = read_manifest(model_dir)
    mask = manifest.special_tokens.mask.token if manifest.special_tokens.mask else "[MASK]"
    masked = as_task(texts, FILL_MASK, mask)
    served = inprocess.open_served(model_dir, FILL_MASK, masked)
    fitting = [index for index, ids in enumerate(served.sequences) if len(ids) < served.limits.max_length]
    if not fitting:
        raise SystemExit(f"bench: no masked text fits {model_dir}'s max_length {served.limits.max_length}")
    masked = [masked[index] for index in fitting]
    served.sequences = [served.sequences[index] for index in fitting]
    section = Section(FILL_MASK, manifest.model_id, served.backend.info.variant, inprocess.ceiling_row(served, args.duration))
    if not args.no_peers:
        section.rows += peer_row(skipped, "fill-mask-pipeline", inprocess.checkpoint_of(manifest),
                                 lambda path: inprocess.fill_mask_pipeline_row(path, masked, args.duration, served.threads))
    return section, masked


def http_rows(embed: Section, embed_dir: Path, texts: list[str], fill_mask: tuple[Section, Path, list[str]] | None,
              args: argparse.Namespace) -> None:
    """One server for both models; each load names its model, and reads that model's /metrics."""
    model_dirs = [embed_dir] + ([fill_mask[1]] if fill_mask and fill_mask[1] != embed_dir else [])

    def bodies(inputs: list[Any], model: str, **extra: Any) -> list[bytes]:
        return [json.dumps({"inputs": item, "model": model, **extra}).encode() for item in inputs]

    singles = bodies(texts, embed.model_id, truncate=True)
    try:
        with running_server(model_dirs) as server:
            asyncio.run(drive(server.port, "/embed", singles, 4, min(2.0, args.duration)))  # connections, caches
            for concurrency in args.concurrency:
                embed.rows.append(measure_http(server, "/embed", singles, concurrency, args.duration, model=embed.model_id)[0])
            size = args.request_sentences
            if size and len(texts) >= size:
                groups = bodies([texts[start:start + size] for start in range(0, len(texts) - size + 1, size)],
                                embed.model_id, truncate=True)
                embed.rows.append(measure_http(server, "/embed", groups, args.request_concurrency, args.duration,
                                               sentences_per_request=size, model=embed.model_id)[0])
            if fill_mask:
                section, _, masked = fill_mask
                masked_bodies = bodies(masked, section.model_id)
                asyncio.run(drive(server.port, "/fill-mask", masked_bodies, 4, min(2.0, args.duration)))
                section.rows.append(measure_http(server, "/fill-mask", masked_bodies, args.fill_mask_concurrency,
                                                 args.duration, model=section.model_id)[0])
    except ServerError as error:
        raise SystemExit(f"bench: {error}") from None


def infinity_plan(args: argparse.Namespace, embed_dir: Path) -> tuple[str, Path] | None:
    """Infinity's executable and the checkpoint it will serve, when asked for; a SystemExit when unusable."""
    if not args.infinity:
        return None
    from model_export.manifest import read_manifest

    from app.bench.peers import find_infinity

    checkpoint = inprocess.checkpoint_of(read_manifest(embed_dir))
    if checkpoint is None:
        raise SystemExit("bench: --infinity needs the checkpoint the model was exported from on this machine")
    return find_infinity(args.infinity), checkpoint


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    texts = load_bench_texts(args.texts)
    embed_dir = args.model_dir or default_model_dir(EMBED)
    mask_dir = fill_mask_dir(args, embed_dir)
    skipped: dict[str, str] = {}
    if mask_dir is None:
        skipped["fill-mask"] = "no fill-mask model (MODEL_DIR serves none, or --no-fill-mask)"
    infinity = infinity_plan(args, embed_dir)  # before minutes of measuring, not after

    embed, served = embed_section(embed_dir, texts, args, skipped)
    env = environment(served, args)
    text_stats = {"file": "app/data/bench/bench-texts.jsonl", **length_stats([len(ids) for ids in served.sequences])}
    del served  # one session at a time in this process
    fill_mask = None
    if mask_dir is not None:
        section, masked = fill_mask_section(mask_dir, texts, args, skipped)
        fill_mask = (section, mask_dir, masked)
    http_rows(embed, embed_dir, texts, fill_mask, args)
    if infinity:
        from app.bench.peers import infinity_rows

        embed.rows += infinity_rows(*infinity, texts, args.concurrency, args.duration, args.request_sentences,
                                    args.request_concurrency, int(env["cpu_count"] or 1))

    sections = [embed] + ([fill_mask[0]] if fill_mask else [])
    report = document(env, text_stats, sections, skipped)
    print(f"{text_stats['count']} texts (tokens: median {text_stats['median']:.0f}, p90 {text_stats['p90']:.0f}, "
          f"max {text_stats['max']}); {args.duration:g} s per measurement; {env['cpu_count']} CPUs")
    print(render(sections))
    print(render_summary(report["summary"]))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if args.json:
        from app.bench.plot import draw

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        png = draw(sections, args.json.with_suffix(".png"))
        print(f"wrote {args.json} and {png}")
    return 0
