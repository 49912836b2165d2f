"""The HTTP side of the bench: the server in a subprocess, a small closed-loop keep-alive client, and
what the server's /metrics says about batching.

The client is asyncio streams over HTTP/1.1 keep-alive: httpx would cost more CPU than the server on
a small machine. Each of `concurrency` connections sends its next request when the last returns.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.bench.rows import Row, percentile

REPO_ROOT = Path(__file__).resolve().parents[2]
METRIC_NAMES = ("distilserve_batch_size_sum", "distilserve_batch_size_count", "distilserve_batch_tokens_sum",
                "distilserve_batch_real_tokens_total")


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


def scrape(url: str, model: str | None = None) -> dict[str, float]:
    import httpx

    return batch_counters(httpx.get(url + "/metrics", timeout=10).text, model)


def batch_counters(metrics_text: str, model: str | None = None) -> dict[str, float]:
    """The batching counters from a /metrics page, summed over models, or only `model`'s when named."""
    label = re.escape(f'model="{model}"') if model else ""
    values = {}
    for name in METRIC_NAMES:
        samples = re.findall(rf"(?m)^{name}(?:\{{[^}}]*{label}[^}}]*\}})? ([0-9.e+-]+)$", metrics_text)
        values[name] = sum(float(sample) for sample in samples)
    return values


async def drive(
    port: int, path: str, bodies: list[bytes], concurrency: int, duration: float, statuses: Counter[int] | None = None
) -> tuple[list[float], int]:
    """Closed loop for `duration` seconds: latencies of the 200s, and how many were not 200 (counted by
    status in `statuses` when given)."""
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
                    if statuses is not None:
                        statuses[status] += 1
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    model_dirs: list[Path], env: dict[str, str] | None = None, ready_timeout: float = 300, log: IO[str] | None = None
) -> Iterator[Server]:
    """`python -m app` serving `model_dirs` on a free port, ready; stopped on leaving. `env` adds to this
    process's environment (PYTHONPATH and all pass through); `log` takes the server's output."""
    port = free_port()
    command = [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)]
    for model_dir in model_dirs:
        command += ["--model-dir", str(model_dir)]
    environment = dict(os.environ, DISTILSERVE_LOG_LEVEL="warning", **(env or {}))
    with running_process(command, port, "/ready", environment, ready_timeout, log) as server:
        yield server


@contextmanager
def running_process(
    command: list[str], port: int, ready_path: str, env: dict[str, str], ready_timeout: float, log: IO[str] | None
) -> Iterator[Server]:
    """Any HTTP server started by `command` on `port`, once `ready_path` answers 200; stopped on leaving."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
    ready = False
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise ServerError(f"server exited with {process.returncode}")
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
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


def measure_closed_loop(
    server: Server, path: str, bodies: list[bytes], concurrency: int, duration: float, *,
    sentences_per_request: int = 1, mode: str = "http",
) -> Row:
    """Sentences per second and request latency at `concurrency` for `duration` seconds, for any server;
    batch figures unknown (NaN)."""
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    latencies, errors = asyncio.run(drive(server.port, path, bodies, concurrency, duration, statuses))
    elapsed = time.perf_counter() - started
    refused = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    return Row(
        mode, concurrency, len(latencies), len(latencies) * sentences_per_request / elapsed,
        *(percentile(latencies, q) * 1000 for q in (50, 90, 99)), float("nan"), float("nan"),
        sentences_per_request=sentences_per_request, errors=errors, note=f"not 200: {refused}" if refused else "",
    )


def measure_http(
    server: Server, path: str, bodies: list[bytes], concurrency: int, duration: float, *,
    sentences_per_request: int = 1, model: str | None = None, mode: str = "http",
) -> tuple[Row, int]:
    """One closed-loop HTTP measurement at `concurrency` for `duration` seconds: its row (sentences per
    second, request latency, and batch sizes and padding waste from `model`'s /metrics), and how many
    responses were not 200."""
    before = scrape(server.url, model)
    row = measure_closed_loop(server, path, bodies, concurrency, duration, sentences_per_request=sentences_per_request,
                              mode=mode)
    after = scrape(server.url, model)
    delta = {key: after[key] - before[key] for key in after}
    row.mean_batch = delta["distilserve_batch_size_sum"] / (delta["distilserve_batch_size_count"] or 1.0)
    row.padding_waste = 1 - delta["distilserve_batch_real_tokens_total"] / (delta["distilserve_batch_tokens_sum"] or 1.0)
    return row, row.errors
