"""`make bench`: raw session throughput vs the HTTP server, on real mixed-length English sentences.

    python -m app.bench [MODEL_DIR] [--concurrency 1,4,16,64] [--duration 8] [--task embed] [--json PATH]

1. Raw session: the same OnnxBackend the server uses, called directly. Latency is one sentence per
   run; throughput is shuffled sentences in batches of max_batch_size (padding to each batch's longest).
2. HTTP: `python -m app` in a subprocess on a free port, driven by a small keep-alive HTTP/1.1 client
   (httpx would cost more CPU than the server on a small machine), one sentence per request, at each
   concurrency for `duration` seconds. Padding waste and batch sizes come from the server's /metrics.

Settings come from DISTILSERVE_* like the server's, so both sides run the same configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from model_export.manifest import Manifest

    from app.backend import OnnxBackend
    from app.model_config import ModelOptions
    from app.providers import ShapeLimits

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    mode: str
    concurrency: int
    requests: int
    throughput: float  # sentences per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_batch: float
    padding_waste: float  # share of computed tokens that were padding


def load_sentences(limit: int | None) -> list[str]:
    """The STS-B test split's unique sentences, shuffled with a fixed seed; without the file, exit."""
    from app.data import stsb_test_csv

    try:
        path = stsb_test_csv()
    except FileNotFoundError as error:
        raise SystemExit(f"bench: {error}") from None
    with path.open(newline="", encoding="utf-8") as handle:
        sentences = {cell.strip() for row in csv.reader(handle) for cell in row[:2] if cell.strip()}
    ordered = sorted(sentences)
    random.Random(0).shuffle(ordered)
    return ordered[:limit] if limit else ordered


def as_task(sentences: list[str], task: str, mask: str) -> list[str]:
    if task == "embed":
        return sentences
    out = []
    for sentence in sentences:
        words = sentence.split()
        words[len(words) // 2] = mask
        out.append(" ".join(words))
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def open_backend(model_dir: Path, options: ModelOptions, trt_cache_dir: Path) -> tuple[OnnxBackend, Manifest, ShapeLimits]:
    """The server's backend for one model directory, built as the server builds it, without HTTP."""
    from model_export.manifest import verify_model_dir

    from app.backend import open_backend as backend_for
    from app.providers import ShapeLimits

    manifest = verify_model_dir(model_dir)
    limits = ShapeLimits(options.max_batch_size, options.max_batch_tokens, options.max_input_length or manifest.max_length)
    return backend_for(model_dir, manifest, options, limits, trt_cache_dir), manifest, limits


def bench_raw(model_dir: Path, texts: list[str], duration: float) -> tuple[list[Row], dict[str, Any]]:
    from app.backend import TokenBatch, TokenItem, Wants, warmup_batch
    from app.settings import Settings
    from app.tokenizer import TextTokenizer

    settings = Settings(model_dir=[model_dir])
    backend, manifest, limits = open_backend(model_dir, settings, settings.trt_cache_path)
    max_length = limits.max_length
    tokenizer = TextTokenizer(model_dir / manifest.tokenizer_file, manifest.special_tokens, max_length, manifest.clean_up_tokenization_spaces)
    wants = Wants(embedding=True, mask_top_k=5 if tokenizer.mask_id is not None else None)
    sequences = tokenizer.encode(texts, truncate=True)
    special = manifest.special_tokens
    for batch, length in limits.warmup_shapes():
        backend.run(warmup_batch(batch, length, special.cls.id, special.sep.id, tokenizer.mask_id))

    def run(batch: list[np.ndarray]) -> None:
        backend.run(TokenBatch.of([TokenItem(ids, wants) for ids in batch]))

    latencies = []
    deadline = time.perf_counter() + duration / 2
    index = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        run([sequences[index % len(sequences)]])
        latencies.append(time.perf_counter() - started)
        index += 1
    single = Row("raw", 1, len(latencies), len(latencies) / sum(latencies), *(percentile(latencies, q) * 1000 for q in (50, 90, 99)), 1.0, 0.0)

    batch_size = settings.max_batch_size
    done = padded = real = 0
    batch_times = []
    deadline = time.perf_counter() + duration / 2
    started_all = time.perf_counter()
    index = 0
    while time.perf_counter() < deadline:
        batch = [sequences[(index + offset) % len(sequences)] for offset in range(batch_size)]
        index += batch_size
        started = time.perf_counter()
        run(batch)
        batch_times.append(time.perf_counter() - started)
        done += len(batch)
        padded += max(map(len, batch)) * len(batch)
        real += sum(map(len, batch))
    elapsed = time.perf_counter() - started_all
    batched = Row("raw", batch_size, done, done / elapsed, *(percentile(batch_times, q) * 1000 for q in (50, 90, 99)),
                  float(batch_size), 1 - real / padded)
    environment = {
        "variant": backend.info.variant,
        "providers": backend.info.providers,
        "model_id": manifest.model_id,
        "intra_op_threads": settings.intra_op_threads,
        "max_batch_size": settings.max_batch_size,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_wait_ms": settings.max_wait_ms,
        "mean_tokens": float(np.mean([len(ids) for ids in sequences])),
        "cpu_count": os.cpu_count(),
    }
    return [single, batched], environment


class KeepAliveClient:
    """HTTP/1.1 POST over one persistent connection: just enough for a benchmark."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def scrape(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    values = {}
    for name in ("distilserve_batch_size_sum", "distilserve_batch_size_count", "distilserve_batch_tokens_sum",
                 "distilserve_batch_real_tokens_total"):
        samples = re.findall(rf"(?m)^{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text)
        values[name] = sum(float(sample) for sample in samples)
    return values


async def drive(port: int, path: str, bodies: list[bytes], concurrency: int, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal errors
        client = KeepAliveClient("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                body = bodies[next(counter) % len(bodies)]
                started = time.perf_counter()
                status, _ = await client.post(path, body)
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


class ServerError(Exception):
    """The server subprocess exited or never became ready; the message says which."""


@dataclass(frozen=True)
class Server:
    url: str
    port: int


@contextmanager
def running_server(
    model_dirs: list[Path], env: dict[str, str] | None = None, ready_timeout: float = 300, log: IO[str] | None = None
) -> Iterator[Server]:
    """`python -m app` serving `model_dirs` on a free port, ready; stopped on leaving. `env` adds to this
    process's environment (PYTHONPATH and all pass through); `log` takes the server's output."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)]
    for model_dir in model_dirs:
        command += ["--model-dir", str(model_dir)]
    environment = dict(os.environ, DISTILSERVE_LOG_LEVEL="warning", **(env or {}))
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT if log else None)
    ready = False
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise ServerError(f"server exited with {process.returncode}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"server not ready after {ready_timeout:.0f}s")
            time.sleep(0.2)
        ready = True
        yield Server(url, port)
    finally:
        if ready:
            process.terminate()
        else:  # nothing to drain, and it may be deep in its warm-up
            process.kill()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_http(server: Server, path: str, bodies: list[bytes], concurrency: int, duration: float) -> tuple[Row, int]:
    """One HTTP measurement at `concurrency` for `duration` seconds: its row (batch sizes and padding
    waste from the server's /metrics), and how many responses were not 200."""
    before = scrape(server.url)
    started = time.perf_counter()
    latencies, errors = asyncio.run(drive(server.port, path, bodies, concurrency, duration))
    elapsed = time.perf_counter() - started
    after = scrape(server.url)
    delta = {key: after[key] - before[key] for key in after}
    batches = delta["distilserve_batch_size_count"] or 1.0
    padded = delta["distilserve_batch_tokens_sum"] or 1.0
    row = Row(
        "http", concurrency, len(latencies), len(latencies) / elapsed,
        *(percentile(latencies, q) * 1000 for q in (50, 90, 99)),
        delta["distilserve_batch_size_sum"] / batches,
        1 - delta["distilserve_batch_real_tokens_total"] / padded,
    )
    return row, errors


def bench_http(model_dir: Path, texts: list[str], task: str, concurrencies: list[int], duration: float) -> list[Row]:
    rows = []
    try:
        with running_server([model_dir]) as server:
            path = "/embed" if task == "embed" else "/fill-mask"
            bodies = [json.dumps({"inputs": text, "truncate": True} if task == "embed" else {"inputs": text}).encode()
                      for text in texts]
            asyncio.run(drive(server.port, path, bodies, 4, min(2.0, duration)))  # connection and cache warm-up
            for concurrency in concurrencies:
                row, errors = measure_http(server, path, bodies, concurrency, duration)
                if errors:
                    print(f"concurrency {concurrency}: {errors} non-200 responses", file=sys.stderr)
                rows.append(row)
    except ServerError as error:
        raise SystemExit(str(error)) from None
    return rows


def render(rows: list[Row]) -> str:
    header = f"{'mode':<5} {'conc':>5} {'requests':>9} {'sent/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'batch':>6} {'pad waste':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        conc = f"b{row.concurrency}" if row.mode == "raw" and row.concurrency > 1 else str(row.concurrency)
        lines.append(
            f"{row.mode:<5} {conc:>5} {row.requests:>9} {row.throughput:>9.1f} {row.p50_ms:>8.2f} {row.p90_ms:>8.2f} "
            f"{row.p99_ms:>8.2f} {row.mean_batch:>6.1f} {row.padding_waste:>9.1%}"
        )
    return "\n".join(lines)


def default_model_dir(task: str) -> Path:
    """The directory the server would answer `task` from without a model_dir: the first that serves it."""
    from model_export.manifest import read_manifest

    from app.server import select_models
    from app.settings import Settings

    paths = [Path(selection.path) for selection in select_models(Settings())]
    return next((path for path in paths if task in read_manifest(path).tasks), paths[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path, help="exported model directory (default: the server's choice)")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client concurrencies")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--task", choices=("embed", "fill-mask"), default="embed")
    parser.add_argument("--sentences", type=int, default=None, help="use only the first N sentences")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from model_export.manifest import read_manifest

    model_dir = args.model_dir or default_model_dir(args.task)
    sentences = load_sentences(args.sentences)
    manifest = read_manifest(model_dir)
    mask = manifest.special_tokens.mask.token if manifest.special_tokens.mask else "[MASK]"
    texts = as_task(sentences, args.task, mask)
    concurrencies = [int(part) for part in args.concurrency.split(",")]

    raw_rows, environment = bench_raw(model_dir, texts, args.duration)
    http_rows = bench_http(model_dir, texts, args.task, concurrencies, args.duration)
    rows = raw_rows + http_rows
    raw_single, raw_batched = raw_rows
    saturated = max(http_rows, key=lambda row: row.throughput)
    at_one = next((row for row in http_rows if row.concurrency == 1), None)
    summary = {
        "throughput_ratio": saturated.throughput / raw_batched.throughput,
        "throughput_target": 0.85,
        "p50_c1_minus_raw_ms": (at_one.p50_ms - raw_single.p50_ms) if at_one else None,
        "p50_target_ms": 3.0,
    }
    print(f"model {environment['model_id']} ({environment['variant']} on {', '.join(environment['providers'])}); "
          f"{len(texts)} STS-B sentences, mean {environment['mean_tokens']:.1f} tokens; task {args.task}")
    print(render(rows))
    print(f"HTTP at saturation / raw batched: {summary['throughput_ratio']:.2f} (target >= 0.85)")
    if at_one:
        print(f"p50 at concurrency 1 - raw single latency: {summary['p50_c1_minus_raw_ms']:.2f} ms (target <= 3 ms)")
    if args.json:
        args.json.write_text(json.dumps(
            {"environment": environment, "task": args.task, "rows": [asdict(row) for row in rows], "summary": summary},
            indent=2,
        ) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
