"""The connection layer, piece by piece: the limit, the tally, the guard's choice of whom to close, the
listening socket at the limit, and the protocol's head deadline (on a fake transport)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from app.connections import (
    FD_RESERVE,
    REPLACEABLE_AFTER_S,
    ConnectionGuard,
    EventTally,
    GuardedH11Protocol,
    connection_limit,
    count_accept_failures,
    guarded_protocol,
    listening_socket,
    raw_error_response,
    unread_bytes,
)
from uvicorn.server import ServerState


def test_the_limit_leaves_descriptors_for_everything_else() -> None:
    assert connection_limit(1024, 1_048_576) == 1024
    assert connection_limit(1024, 256) == 256 - FD_RESERVE
    assert connection_limit(1024, FD_RESERVE) == 1  # never zero: the server must take someone


@pytest.mark.asyncio
async def test_the_tally_logs_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    tally = EventTally(interval_s=0.05)
    with caplog.at_level(logging.WARNING, logger="distilserve.connections"):
        for _ in range(300):
            tally.note("closed at the head deadline")
        tally.note("closed to make room")
        await asyncio.sleep(0.1)
        tally.note("closed to make room")
        tally.flush()
    assert [record.getMessage() for record in caplog.records] == [
        "connections in the last 0.05s: 300 closed at the head deadline, 1 closed to make room",
        "connections in the last 0.05s: 1 closed to make room",
    ]


def test_the_head_timeout_answer_is_a_whole_json_408() -> None:
    raw = raw_error_response("timeout", "the request head did not arrive within 10 s")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 408 Request Timeout"
    assert "connection: close" in lines and f"content-length: {len(body)}" in lines
    assert json.loads(body) == {"error": "the request head did not arrive within 10 s", "error_type": "timeout"}


class FakeTransport(asyncio.Transport):
    def __init__(self, sock: socket.socket | None = None) -> None:
        super().__init__()
        self.sock = sock
        self.written = b""
        self.closed = False
        self.aborted = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def connect(guard: ConnectionGuard, transport: FakeTransport | None = None) -> tuple[GuardedH11Protocol, FakeTransport]:
    config = uvicorn.Config(ok_app, log_level="warning", ws="none", timeout_keep_alive=guard.keep_alive_s)  # type: ignore[arg-type]
    protocol = guarded_protocol(guard)(config=config, server_state=ServerState(), app_state={})
    transport = transport or FakeTransport()
    transport.protocol = protocol
    guard.accepted += 1  # as the listening socket counts it
    protocol.connection_made(transport)
    return protocol, transport


@pytest.fixture
def guard() -> ConnectionGuard:
    return ConnectionGuard(limit=2, header_timeout_s=0.1, keep_alive_s=0.05, tally=EventTally())


@pytest.mark.asyncio
async def test_a_partial_head_gets_408_at_the_deadline(guard: ConnectionGuard) -> None:
    protocol, transport = connect(guard)
    protocol.data_received(b"POST /embed HTTP/1.1\r\nHost: x\r\n")
    await asyncio.sleep(0.15)
    assert transport.closed and transport.written == guard.head_overdue
    assert json.loads(transport.written.partition(b"\r\n\r\n")[2])["error"] == (
        "the request head did not arrive within 0.1 s"
    )
    assert guard.live == set()  # connection_lost told the guard


@pytest.mark.asyncio
async def test_a_silent_connection_is_closed_without_an_answer(guard: ConnectionGuard) -> None:
    _, transport = connect(guard)
    await asyncio.sleep(0.05)
    assert not transport.closed
    await asyncio.sleep(0.1)
    assert transport.closed and transport.written == b""


@pytest.mark.asyncio
async def test_a_request_whose_body_is_pending_is_left_to_the_app(guard: ConnectionGuard) -> None:
    protocol, transport = connect(guard)
    protocol.data_received(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    await asyncio.sleep(0.15)
    assert not transport.closed and protocol.client_bound and not protocol.awaiting_head
    protocol.data_received(b"67890")
    await asyncio.sleep(0.01)
    assert transport.written.startswith(b"HTTP/1.1 200 OK")


@pytest.mark.asyncio
async def test_after_a_response_the_next_head_has_keep_alive_plus_the_head_timeout(guard: ConnectionGuard) -> None:
    protocol, transport = connect(guard)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.01)
    assert transport.written.startswith(b"HTTP/1.1 200 OK") and protocol.awaiting_head
    sent = len(transport.written)
    protocol.data_received(b"GET / HT")  # the next request starts before the keep-alive timer closes it
    await asyncio.sleep(0.1)  # past the head timeout alone, within keep-alive + head timeout
    assert not transport.closed
    await asyncio.sleep(0.1)
    assert transport.closed and transport.written[sent:] == guard.head_overdue


def tls_client_hello() -> bytes:
    """The first bytes a TLS client sends, as an https:// client would to this plain-HTTP port."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"GET / HTTP/1.1\r\n\r\n", "Missing mandatory Host: header"),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", "illegal request line"),  # the client's bytes stay out
        (tls_client_hello(), "illegal request line"),
    ],
    ids=["negative-content-length", "no-host", "bad-request-line", "tls-client-hello"],
)
async def test_a_request_that_cannot_be_parsed_gets_a_json_400(guard: ConnectionGuard, data: bytes, reason: str) -> None:
    protocol, transport = connect(guard)
    protocol.data_received(data)
    await asyncio.sleep(0)
    head, _, body = transport.written.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request"
    assert {"content-type: application/json", f"content-length: {len(body)}", "connection: close"} <= set(lines)
    assert json.loads(body) == {"error": f"malformed HTTP request: {reason}", "error_type": "bad_request"}
    assert transport.closed


@pytest.fixture
def patient() -> ConnectionGuard:
    """A guard whose head deadline never fires within a test, for two connections."""
    return ConnectionGuard(limit=2, header_timeout_s=60, keep_alive_s=5, tally=EventTally())


@pytest.fixture
def socket_pairs() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def client_socket(opened: list[socket.socket], unread: bytes = b"") -> socket.socket:
    """The server side of a socket pair, with `unread` waiting in its receive buffer."""
    ours, theirs = socket.socketpair()
    opened += [ours, theirs]
    if unread:
        theirs.sendall(unread)
    return ours


@pytest.mark.asyncio
async def test_at_the_limit_the_longest_waiting_connection_makes_room(
    patient: ConnectionGuard, socket_pairs: list[socket.socket]
) -> None:
    guard = patient
    _, first_transport = connect(guard, FakeTransport(client_socket(socket_pairs)))
    _, second_transport = connect(guard, FakeTransport(client_socket(socket_pairs)))
    assert not guard.may_accept()  # both are new: the client waits in the backlog
    await asyncio.sleep(REPLACEABLE_AFTER_S)
    assert not guard.may_accept()  # closes the first, whose descriptor is freed on the next loop turn
    assert first_transport.aborted and not second_transport.aborted
    assert not guard.may_accept()  # one release at a time
    await asyncio.sleep(0)
    assert guard.may_accept()
    assert guard.tally.counts["closed to make room (waited longest on their client)"] == 1


@pytest.mark.asyncio
async def test_busy_connections_and_ones_with_unread_bytes_are_not_closed(
    patient: ConnectionGuard, socket_pairs: list[socket.socket]
) -> None:
    guard = patient
    busy, busy_transport = connect(guard, FakeTransport(client_socket(socket_pairs)))
    busy.data_received(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")  # body pending: client-bound
    _, sending_transport = connect(guard, FakeTransport(client_socket(socket_pairs, unread=b"GET / HTTP/1.1")))
    assert unread_bytes(sending_transport) == len(b"GET / HTTP/1.1")
    await asyncio.sleep(REPLACEABLE_AFTER_S)
    busy.data_received(b"x")  # the body is complete: the app has the request now
    assert not guard.may_accept()
    assert not busy_transport.aborted and not sending_transport.aborted
    assert guard.tally.counts == {"times every connection was busy or new (clients waited in the backlog)": 1}


@pytest.mark.asyncio
async def test_the_listening_socket_leaves_clients_in_the_backlog_at_the_limit() -> None:
    guard = ConnectionGuard(limit=1, header_timeout_s=60, keep_alive_s=5, tally=EventTally())
    server = listening_socket("127.0.0.1", 0, guard)
    server.listen(8)
    clients = [socket.create_connection(server.getsockname()) for _ in range(2)]
    try:
        accepted, _ = server.accept()
        assert guard.accepted == 1
        with pytest.raises(BlockingIOError):
            server.accept()  # the second client stays queued in the kernel
        accepted.close()
    finally:
        for client in clients:
            client.close()
        server.close()


def test_accepted_connections_send_without_nagle_delay() -> None:
    """asyncio sets TCP_NODELAY only when the socket's proto says TCP; without it each keep-alive
    response waited ~40 ms for a delayed ACK (p50 48 ms instead of 8.5 ms for a 5 ms request)."""
    guard = ConnectionGuard(limit=4, header_timeout_s=60, keep_alive_s=5, tally=EventTally())
    server = listening_socket("127.0.0.1", 0, guard)
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    try:
        accepted, _ = server.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        accepted.close()
    finally:
        client.close()
        server.close()


@pytest.mark.asyncio
async def test_accepts_out_of_descriptors_are_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    tally = EventTally()
    count_accept_failures(loop, tally)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            for _ in range(3):
                loop.call_exception_handler({"message": "socket.accept() out of system resource"})
            loop.call_exception_handler({"message": "something else"})
        assert tally.counts == {"accepts failed: out of descriptors": 3}
        assert [record.getMessage() for record in caplog.records] == ["something else"]
    finally:
        loop.set_exception_handler(None)
        tally.flush()
