from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.live_server import LiveServer, live_server

API_KEY = "test-key-not-secret"


@pytest.fixture(autouse=True)
def hub_client_may_reach_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session runs with HF_HUB_OFFLINE=1, and huggingface_hub then refuses every HTTP request, even
    to 127.0.0.1. These clients talk only to the local test server, so lift it for them alone."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="session")
def server(tiny_mlm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The tiny masked-LM model served by a real process, with an API key set (clients must send it)."""
    with live_server(tiny_mlm_model_dir, tmp_path_factory.mktemp("server"), {"DISTILSERVE_API_KEY": API_KEY}) as live:
        yield live
