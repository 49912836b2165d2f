"""The connection layer under uvicorn: how much slow, idle and surplus clients can hold.

uvicorn's h11 protocol has a keep-alive timeout, but no deadline for a request head and no limit on
connections: sockets that trickle a byte a second pile up until accept() fails with EMFILE, and
asyncio then logs a traceback for every failed accept. Here:

- `connection_limit`: the most sockets held, below the process's descriptor limit;
- `GuardedSocket`: a listening socket that, at the limit, closes the connection that has waited
  longest on its client (for a request head, or the rest of a body; at least `REPLACEABLE_AFTER_S`,
  with nothing unread) to make room, and otherwise leaves new clients in the kernel's backlog;
  accept never runs out of descriptors;
- `GuardedH11Protocol`: each connection has `header_timeout_s` to deliver a complete request head
  (from opening, or from the end of its keep-alive wait), else 408 and close (a close alone if it
  sent nothing); a request h11 cannot parse gets a 400 in the JSON error shape, not uvicorn's text;
- `EventTally`: one log line per interval that sums up what was closed, not a line per socket.

The body deadline is the app's (`RequestGuard` in app/server.py): only the app knows when it waits
for a body. `serve` runs an app under uvicorn with all of this.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import json
import logging
import re
import resource
import socket
import sys
import termios
from collections import Counter
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.errors import error_body, status_for
from app.settings import Settings

log = logging.getLogger("distilserve.connections")

# Descriptors kept for everything but client sockets: model files, logs, the event loop's own,
# static files, a GPU driver's device files.
FD_RESERVE = 64
LOG_INTERVAL_S = 10.0
# A connection must have waited this long on its client before it may be closed to make room: a new
# client gets time to send its request, and one flooding reconnects cannot churn through the rest.
REPLACEABLE_AFTER_S = 1.0


def connection_limit(max_connections: int, descriptor_limit: int) -> int:
    """`max_connections`, lowered to leave FD_RESERVE descriptors for everything else."""
    return max(1, min(max_connections, descriptor_limit - FD_RESERVE))


def descriptor_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


class EventTally:
    """Counts what the guards closed or held back and logs the counts once per interval, not per socket."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.counts: Counter[str] = Counter()
        self._flush: asyncio.TimerHandle | None = None

    def note(self, event: str) -> None:
        self.counts[event] += 1
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self.counts:
            summary = ", ".join(f"{count} {event}" for event, count in self.counts.most_common())
            log.warning("connections in the last %gs: %s", self.interval_s, summary)
            self.counts.clear()


def raw_error_response(kind: str, message: str) -> bytes:
    """A whole response in the JSON error shape (TEI style: there may be no path to pick another), written
    straight to a transport that has no request the app could answer; the connection closes after it."""
    status = HTTPStatus(status_for(kind))
    body = json.dumps(error_body(kind, message, "")).encode()
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "connection: close\r\n\r\n").encode() + body


def malformed_reason(error: BaseException | None) -> str:
    """What h11 found wrong with a request, without the client's bytes it quotes (`illegal request line:
    bytearray(b'...')`): those may be anything, TLS records included."""
    if not isinstance(error, h11.RemoteProtocolError):
        return "malformed HTTP request"
    reason = re.split(r": (?:bytearray\()?b['\"]", str(error), maxsplit=1)[0]
    return f"malformed HTTP request: {reason}"


def unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for us on this socket: a client that sent them is not the one stalling."""
    sock = transport.get_extra_info("socket")
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except (OSError, AttributeError):
        return 0
    return count[0]


class ConnectionGuard:
    """The state every connection of one server shares: who is open, who waits on its client, since when."""

    def __init__(self, limit: int, header_timeout_s: float, keep_alive_s: float, tally: EventTally) -> None:
        self.limit = limit
        self.header_timeout_s = header_timeout_s
        self.keep_alive_s = keep_alive_s
        self.tally = tally
        self.accepted = 0  # sockets accepted whose protocol has not connected yet
        self.live: set[GuardedH11Protocol] = set()
        self.releasing: set[GuardedH11Protocol] = set()  # closed to make room, descriptor not yet freed
        # Connection -> when it began to wait on its client (loop time), oldest first (a dict keeps order).
        self._waiting: dict[GuardedH11Protocol, float] = {}
        self._full = False
        self.head_overdue = raw_error_response("timeout", f"the request head did not arrive within {header_timeout_s:g} s")

    def may_accept(self) -> bool:
        """Whether one more socket fits. At the limit, close the connection that has waited longest on its
        client, unless one is being released already; the new client waits a loop turn in the backlog."""
        if self.accepted + len(self.live) < self.limit:
            self._full = False
            return True
        if not self.releasing and not self._replace_one() and not self._full:
            self._full = True  # counted once per spell: asyncio asks again on every loop turn
            self.tally.note("times every connection was busy or new (clients waited in the backlog)")
        return False

    def connected(self, protocol: GuardedH11Protocol) -> None:
        self.accepted = max(0, self.accepted - 1)
        self.live.add(protocol)

    def lost(self, protocol: GuardedH11Protocol) -> None:
        self.live.discard(protocol)
        self.releasing.discard(protocol)
        self._waiting.pop(protocol, None)

    def waits(self, protocol: GuardedH11Protocol, since: float) -> None:
        """`protocol` waits on its client from `since`; it goes to the back of the line."""
        self._waiting.pop(protocol, None)
        self._waiting[protocol] = since

    def _replace_one(self) -> bool:
        """Close the connection that has waited longest on its client, if that is long enough."""
        now = asyncio.get_running_loop().time()
        done_waiting, victim = [], None
        for protocol, since in self._waiting.items():
            if not protocol.client_bound or protocol.transport.is_closing():
                done_waiting.append(protocol)  # busy with a request, or gone: back in line when it waits again
            elif now - since < REPLACEABLE_AFTER_S:
                break  # the rest waited less still
            elif not unread_bytes(protocol.transport):
                victim = protocol
                break
        for protocol in done_waiting:
            del self._waiting[protocol]
        if victim is None:
            return False
        del self._waiting[victim]
        self.releasing.add(victim)
        victim.transport.abort()
        self.tally.note("closed to make room (waited longest on their client)")
        return True


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, counted by the guard, with a deadline for each request head."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def awaiting_head(self) -> bool:
        """No request in progress: between requests, or a head not yet complete."""
        return self.cycle is None or self.cycle.response_complete

    @property
    def client_bound(self) -> bool:
        """Waiting on the client: for a request head, or for the rest of a body."""
        return self.awaiting_head or self.cycle.more_body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.connected(self)
        self._await_head(self.guard.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.guard.lost(self)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.awaiting_head:
            # uvicorn's keep-alive timer closes the connection if nothing comes; once something does,
            # the head has header_timeout_s more to be complete.
            self._await_head(self.guard.keep_alive_s + self.guard.header_timeout_s)

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a request h11 cannot parse (a negative Content-Length, a broken request line,
        TLS bytes on this plain port) with a plain-text 400; answer in the JSON error shape instead.
        uvicorn calls this inside its `except h11.RemoteProtocolError`, so that error says what was wrong."""
        self.transport.write(raw_error_response("bad_request", malformed_reason(sys.exception())))
        self.transport.close()

    def _await_head(self, within_s: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.guard.waits(self, self.loop.time())
        self._deadline = self.loop.call_later(within_s, self._head_overdue)

    def _head_overdue(self) -> None:
        self._deadline = None
        if not self.awaiting_head or self.transport.is_closing():
            return  # a request arrived in time; the app keeps its own deadline for its body
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self.transport.write(self.guard.head_overdue)  # part of a head came: say why we close
        self.guard.tally.note("closed at the head deadline")
        self.transport.close()


class GuardedSocket(socket.socket):
    """A listening socket whose accept() leaves the client in the backlog at the guard's limit.

    asyncio takes BlockingIOError for "nothing more to accept now" and tries again on the next loop
    turn, by which time a replaced connection has freed its descriptor or a request has finished.
    """

    guard: ConnectionGuard

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.guard.may_accept():
            raise BlockingIOError
        connection, address = super().accept()
        # asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it Nagle's algorithm
        # and delayed ACKs add ~40 ms to every keep-alive response.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.guard.accepted += 1
        return connection, address


def listening_socket(host: str, port: int, guard: ConnectionGuard) -> GuardedSocket:
    sock = GuardedSocket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.guard = guard
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, bound to this server's guard."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


def count_accept_failures(loop: asyncio.AbstractEventLoop, tally: EventTally) -> None:
    """Should accept still run out of descriptors (something else holds them), count it in the tally
    instead of letting asyncio log a traceback per attempt."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            tally.note("accepts failed: out of descriptors")
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def serve(app: ASGIApp, settings: Settings) -> None:
    """Run `app` under uvicorn on the guarded socket and protocol, until SIGTERM or SIGINT.

    Raises OSError when the address cannot be bound (before anything starts)."""
    limit = connection_limit(settings.max_connections, descriptor_limit())
    if limit < settings.max_connections:
        log.warning(
            "max_connections %d lowered to %d: the descriptor limit is %d (raise it with ulimit -n)",
            settings.max_connections, limit, descriptor_limit(),
        )
    tally = EventTally()
    guard = ConnectionGuard(limit, settings.header_timeout_s, settings.keep_alive_s, tally)
    sock = listening_socket(settings.host, settings.port, guard)
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        loop="asyncio",
        http=guarded_protocol(guard),
        ws="none",
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_timeout_s,
    )
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d; at most %d connections", host, port, limit)
    asyncio.run(_serve(uvicorn.Server(config), sock, tally))


async def _serve(server: uvicorn.Server, sock: socket.socket, tally: EventTally) -> None:
    count_accept_failures(asyncio.get_running_loop(), tally)
    try:
        await server.serve(sockets=[sock])
    finally:
        tally.flush()
