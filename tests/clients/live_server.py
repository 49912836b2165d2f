"""A real distilserve process on 127.0.0.1, for tests that drive it with real clients."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class LiveServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: LiveServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout_s:.0f}s:\n{server.log()}")


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@contextmanager
def live_server(
    model_dir: Path | None,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    args: Sequence[str] = (),
    max_open_files: int | None = None,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Iterator[LiveServer]:
    """`python -m app --model-dir DIR --port P [ARGS]` on a free port; stopped with SIGTERM afterwards.

    Without `model_dir` the server chooses its model from `env` (model_source, cache_dir).
    `max_open_files` sets the child's descriptor limit (soft and hard), as a container's ulimit would."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILSERVE_")}
    child_env.update(env or {})
    model_args = [] if model_dir is None else ["--model-dir", str(model_dir)]
    command = [sys.executable, "-m", "app", *model_args, "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, *args], cwd=REPO_ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=None if max_open_files is None else lambda: _limit_open_files(max_open_files),
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, process=process, log_path=log_path)
    try:
        _wait_ready(server, start_timeout_s)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
