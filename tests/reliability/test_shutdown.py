"""Shutdown always ends: SIGTERM exits 0 within the graceful-shutdown timeout, whatever the clients do,
and what could not finish is answered 503 rather than dropped."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.clients.live_server import live_server
from tests.reliability.conftest import BASE_ENV
from tests.reliability.raw_clients import BODY_HEAD, HOST

SHUTDOWN_S = 2.0
EXIT_SLACK_S = 10.0  # the batcher's drain and interpreter exit, on a loaded 2-core CI machine


def test_sigterm_with_an_incomplete_body_exits_zero_within_the_timeout(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    # The body timeout is far longer than the shutdown timeout, so only the latter can end this.
    env = {**BASE_ENV, "DISTILSERVE_GRACEFUL_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_S), "DISTILSERVE_BODY_TIMEOUT_S": "60"}
    with live_server(tiny_mlm_model_dir, tmp_path, env) as server:
        with socket.create_connection((HOST, server.port), timeout=SHUTDOWN_S + EXIT_SLACK_S) as held:
            held.sendall(BODY_HEAD + b'{"inputs": "' + b"x" * 91)
            time.sleep(0.3)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := held.recv(65536):  # head and body may come in separate segments
                answer += chunk
            assert server.process.wait(timeout=SHUTDOWN_S + EXIT_SLACK_S) == 0, server.log()
            took = time.monotonic() - signalled
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"error": "the server is shutting down", "error_type": "unhealthy"}
    assert SHUTDOWN_S - 0.5 < took < SHUTDOWN_S + EXIT_SLACK_S


def test_queued_work_that_cannot_finish_in_time_gets_503(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    # A 30 s batching wait keeps the requests queued past the shutdown timeout.
    env = {
        **BASE_ENV,
        "DISTILSERVE_GRACEFUL_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_S),
        "DISTILSERVE_MAX_WAIT_MS": "30000",
        "DISTILSERVE_MAX_BATCH_SIZE": "64",
    }
    with live_server(tiny_mlm_model_dir, tmp_path, env) as server:

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=SHUTDOWN_S + EXIT_SLACK_S) as client:
                requests = [asyncio.ensure_future(client.post("/embed", json={"inputs": f"queued {i}"})) for i in range(4)]
                await asyncio.sleep(0.5)
                server.process.send_signal(signal.SIGTERM)
                return await asyncio.gather(*requests)

        responses = asyncio.run(scenario())
        assert server.process.wait(timeout=EXIT_SLACK_S) == 0, server.log()
    assert [response.status_code for response in responses] == [503] * 4
    assert responses[0].json() == {"error": "the server is shutting down", "error_type": "unhealthy"}
