"""An overload burst larger than the descriptor limit: every request gets 200 or 429, none a 5xx, none hangs,
and the log stays quiet (before the connection limit, asyncio logged a traceback per failed accept)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.clients.live_server import live_server
from tests.reliability.conftest import BASE_ENV

FD_LIMIT = 256
CLIENTS = 300
BURST_BOUND_S = 30.0
LOG_LINES_BOUND = 20


@pytest.mark.slow
def test_a_burst_over_the_descriptor_limit_gets_only_200_and_429(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    with live_server(tiny_mlm_model_dir, tmp_path, BASE_ENV, max_open_files=FD_LIMIT) as server:
        log_before = len(server.log())

        async def one(client: httpx.AsyncClient, index: int) -> int | str:
            try:
                response = await client.post("/embed", json={"inputs": [f"burst request {index}"] * 8})
            except httpx.HTTPError as error:
                return type(error).__name__
            return response.status_code

        async def burst() -> list[int | str]:
            limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=server.url, timeout=BURST_BOUND_S, limits=limits) as client:
                return await asyncio.gather(*(one(client, index) for index in range(CLIENTS)))

        outcomes = Counter(asyncio.run(asyncio.wait_for(burst(), BURST_BOUND_S + 5)))
        log = server.log()[log_before:]
    assert set(outcomes) <= {200, 429}, outcomes
    assert outcomes[200] > 0, outcomes
    assert len(log.splitlines()) <= LOG_LINES_BOUND, log[-3000:]
