"""Raw-socket clients for the reliability suite: the slow and idle clients that http libraries will not
impersonate, and a prober that measures what a normal client sees meanwhile. Loopback only."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field

import httpx

HOST = "127.0.0.1"
SLOW_HEAD = b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
BODY_HEAD = b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"


@dataclass
class AttackTally:
    connections: int = 0
    dropped: int = 0  # connections the server closed or reset
    refused: int = 0  # connect() itself failed or timed out


@dataclass
class ProbeTally:
    statuses: list[int] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def worst_s(self) -> float:
        return max(self.latencies_s, default=float("inf"))


async def _trickle(port: int, head: bytes, tail: bytes, stop_at: float, tally: AttackTally) -> None:
    """Send `head` at once, then `tail` one byte a second; reconnect whenever the server lets go."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2.0)
        except (OSError, TimeoutError):
            tally.refused += 1
            await asyncio.sleep(0.2)
            continue
        tally.connections += 1
        try:
            writer.write(head)
            for byte in tail:
                if time.monotonic() >= stop_at:
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                if await _server_let_go(reader, 1.0):  # doubles as the one-second pause
                    tally.dropped += 1
                    break
        except OSError:
            tally.dropped += 1
        finally:
            writer.close()


async def _server_let_go(reader: asyncio.StreamReader, wait_s: float) -> bool:
    """True when the server answered (a timeout) or closed within `wait_s`."""
    try:
        await asyncio.wait_for(reader.read(4096), wait_s)
    except TimeoutError:
        return False
    return True


async def slow_headers(port: int, sockets: int, seconds: float) -> AttackTally:
    """`sockets` clients, each sending its request head one byte a second (slowloris)."""
    tally = AttackTally()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(_trickle(port, b"", SLOW_HEAD, stop_at, tally) for _ in range(sockets)))
    return tally


async def slow_bodies(port: int, sockets: int, seconds: float) -> AttackTally:
    """`sockets` clients, each sending a whole head announcing 1000 bytes, then the body one byte a second."""
    tally = AttackTally()
    stop_at = time.monotonic() + seconds
    body = b'{"inputs": "' + b"x" * 985 + b'"}'
    await asyncio.gather(*(_trickle(port, BODY_HEAD, body, stop_at, tally) for _ in range(sockets)))
    return tally


async def probe(url: str, seconds: float, interval_s: float = 0.2, timeout_s: float = 5.0) -> ProbeTally:
    """Normal requests, each on a new connection, one every `interval_s`, for `seconds`."""
    tally = ProbeTally()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                response = await client.post("/embed", json={"inputs": "a normal request"})
                tally.statuses.append(response.status_code)
                tally.latencies_s.append(time.perf_counter() - started)
            except httpx.HTTPError as error:
                tally.errors.append(f"{type(error).__name__} after {time.perf_counter() - started:.1f}s")
            await asyncio.sleep(interval_s)
    return tally


@dataclass(frozen=True)
class RawAnswer:
    status: int | None  # None: the server said nothing
    body: dict[str, object] | None
    closed_after_s: float | None  # None: still open when the wait ended


def send_and_wait(port: int, data: bytes, wait_s: float) -> RawAnswer:
    """Send `data` (a partial request, or nothing), then read until the server closes or `wait_s` ends."""
    started = time.monotonic()
    received = b""
    closed_after_s = None
    with socket.create_connection((HOST, port), timeout=wait_s) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
                sock.settimeout(max(0.01, wait_s - (time.monotonic() - started)))
            closed_after_s = time.monotonic() - started
        except ConnectionResetError:
            closed_after_s = time.monotonic() - started
        except TimeoutError:
            pass
    if not received:
        return RawAnswer(None, None, closed_after_s)
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return RawAnswer(status, json.loads(body) if body else None, closed_after_s)
