"""With an API key set, the key is checked before anything reads the body, on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.live_server import LiveServer, live_server
from tests.reliability.conftest import BASE_ENV

KEY = "reliability-key"


@pytest.fixture(scope="module")
def keyed(tiny_mlm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {**BASE_ENV, "DISTILSERVE_API_KEY": KEY, "DISTILSERVE_PROTECT_INFO_METRICS": "true"}
    with live_server(tiny_mlm_model_dir, tmp_path_factory.mktemp("server"), env) as server:
        yield server


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings", "/"])
@pytest.mark.parametrize("body", [b"{broken", b'{"inputs": 5}', b"\xff\xfe"])
def test_a_broken_body_without_the_key_is_401(keyed: LiveServer, path: str, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    assert httpx.post(keyed.url + path, content=body, headers=headers).status_code == 401
    wrong = {**headers, "authorization": "Bearer wrong"}
    assert httpx.post(keyed.url + path, content=body, headers=wrong).status_code == 401
    right = {**headers, "authorization": f"Bearer {KEY}"}
    assert httpx.post(keyed.url + path, content=body, headers=right).status_code == 422


def test_info_and_metrics_need_the_key_when_asked_and_probes_stay_open(keyed: LiveServer) -> None:
    for path in ("/info", "/metrics"):
        assert httpx.get(keyed.url + path).status_code == 401
        assert httpx.get(keyed.url + path, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    for path in ("/health", "/ready"):
        assert httpx.get(keyed.url + path).status_code == 200
