"""What a real server process answers to bytes that are not an HTTP request it can parse: the JSON error
shape wherever an HTTP answer can be read, and a clean TLS failure for a TLS client (which cannot read
plain HTTP at all), with normal requests answered throughout."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.live_server import LiveServer, live_server
from tests.reliability.conftest import BASE_ENV
from tests.reliability.raw_clients import HOST, send_and_wait

WAIT_S = 4.0


@pytest.fixture(scope="module")
def server(tiny_mlm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tiny_mlm_model_dir, tmp_path_factory.mktemp("server"), BASE_ENV) as running:
        yield running


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"GET /health HTTP/1.1\r\n\r\n", "Missing mandatory Host: header"),
    ],
)
def test_an_unparsable_request_gets_the_json_error_shape(server: LiveServer, request_bytes: bytes, reason: str) -> None:
    answer = send_and_wait(server.port, request_bytes, WAIT_S)
    assert answer.status == 400
    assert answer.body == {"error": f"malformed HTTP request: {reason}", "error_type": "bad_request"}
    assert answer.closed_after_s is not None and answer.closed_after_s < WAIT_S


def test_a_tls_client_on_the_plain_port_fails_its_handshake(server: LiveServer) -> None:
    # The server answers a JSON 400, but a TLS client reads it as a broken TLS record: documented, not fixable.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, server.port), timeout=WAIT_S) as sock:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(sock, server_hostname="localhost")
    assert httpx.get(f"{server.url}/health", timeout=WAIT_S).status_code == 200
