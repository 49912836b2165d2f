"""SIGTERM under load: a real `python -m app` process; every request it accepted is answered, then it exits 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 24


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def queue_depth(url: str) -> float:
    match = re.search(r"(?m)^distilserve_queue_depth\{[^}]*\} ([0-9.e+-]+)", httpx.get(f"{url}/metrics").text)
    return float(match.group(1)) if match else -1.0


async def load(url: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30.0) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/embed", json={"inputs": f"sentence number {i}"}) for i in range(REQUESTS))
        )


def test_sigterm_finishes_every_accepted_request_and_exits_zero(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILSERVE_")}
    # A long batching wait with a batch size above the load keeps every request queued inside the
    # server until well after SIGTERM, so the test knows they were all accepted before it.
    env.update(DISTILSERVE_MAX_WAIT_MS="1500", DISTILSERVE_MAX_BATCH_SIZE="64", DISTILSERVE_PROVIDERS="cpu")
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "--model-dir", str(tiny_mlm_model_dir), "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

        async def scenario() -> list[httpx.Response]:
            requests = asyncio.ensure_future(load(url))
            while queue_depth(url) < REQUESTS:  # all accepted and waiting in the batcher
                await asyncio.sleep(0.02)
                assert not requests.done()
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(f"{url}/health")
            return await requests

        responses = asyncio.run(scenario())
        assert [response.status_code for response in responses] == [200] * REQUESTS
        assert all(len(response.json()) == 1 for response in responses)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
