"""Slow and idle clients cannot take the server: a real process under a container-like descriptor limit
keeps answering normal requests while hundreds of sockets trickle heads or bodies, with the defaults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.clients.live_server import LiveServer, live_server
from tests.reliability.conftest import BASE_ENV
from tests.reliability.raw_clients import AttackTally, BODY_HEAD, probe, send_and_wait, slow_bodies, slow_headers

FD_LIMIT = 256
ATTACKERS = 300  # more sockets than descriptors
ATTACK_S = 8.0
# What a normal request may take while attacked, on a loaded 2-core machine (unattacked: ~10 ms).
PROBE_BOUND_S = 2.0
# The attack must not flood the log: a summary per interval, not a line (or traceback) per socket.
LOG_LINES_BOUND = 20


@pytest.mark.slow
@pytest.mark.parametrize("attack", [slow_headers, slow_bodies], ids=["slow-headers", "slow-bodies"])
def test_slow_clients_do_not_shut_out_normal_requests(
    attack: Callable[[int, int, float], Awaitable[AttackTally]], tiny_mlm_model_dir: Path, tmp_path: Path
) -> None:
    with live_server(tiny_mlm_model_dir, tmp_path, BASE_ENV, max_open_files=FD_LIMIT) as server:
        log_before = len(server.log())

        async def scenario() -> tuple[AttackTally, object]:
            attacking = asyncio.ensure_future(attack(server.port, ATTACKERS, ATTACK_S))
            await asyncio.sleep(1.5)  # every attacker has connected or is trying to
            probes = await probe(server.url, ATTACK_S - 2.5)
            return await attacking, probes

        tally, probes = asyncio.run(scenario())
        log = server.log()[log_before:]
    assert tally.connections >= ATTACKERS
    assert not probes.errors, f"{probes.errors[:5]} ({len(probes.errors)} failed, {len(probes.statuses)} answered)"
    assert set(probes.statuses) == {200}
    assert probes.worst_s < PROBE_BOUND_S, probes.latencies_s
    assert len(log.splitlines()) <= LOG_LINES_BOUND, log[-3000:]


@pytest.fixture(scope="module")
def short_timeouts(tiny_mlm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        **BASE_ENV,
        "DISTILSERVE_HEADER_TIMEOUT_S": "1",
        "DISTILSERVE_BODY_TIMEOUT_S": "1",
        "DISTILSERVE_KEEP_ALIVE_S": "1",
    }
    with live_server(tiny_mlm_model_dir, tmp_path_factory.mktemp("server"), env) as server:
        yield server


WAIT_S = 4.0  # the timeouts above are 1 s; the rest is slack for a loaded machine


def test_an_incomplete_body_is_answered_408_in_the_json_shape(short_timeouts: LiveServer) -> None:
    answer = send_and_wait(short_timeouts.port, BODY_HEAD + b'{"inputs": "' + b"x" * 91, WAIT_S)
    assert answer.status == 408
    assert answer.body == {"error": "the request body did not arrive within 1 s", "error_type": "timeout"}
    assert answer.closed_after_s is not None and 0.9 < answer.closed_after_s < WAIT_S


def test_an_incomplete_head_is_answered_408_and_closed(short_timeouts: LiveServer) -> None:
    answer = send_and_wait(short_timeouts.port, b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\n", WAIT_S)
    assert answer.status == 408
    assert answer.body == {"error": "the request head did not arrive within 1 s", "error_type": "timeout"}
    assert answer.closed_after_s is not None and 0.9 < answer.closed_after_s < WAIT_S


def test_a_silent_connection_is_closed_without_a_word(short_timeouts: LiveServer) -> None:
    answer = send_and_wait(short_timeouts.port, b"", WAIT_S)
    assert answer.status is None
    assert answer.closed_after_s is not None and 0.9 < answer.closed_after_s < WAIT_S


def test_an_idle_keep_alive_connection_is_closed(short_timeouts: LiveServer) -> None:
    answer = send_and_wait(short_timeouts.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", WAIT_S)
    assert answer.status == 200
    assert answer.closed_after_s is not None and 0.9 < answer.closed_after_s < WAIT_S
