"""The first start on an empty cache, by a real `python -m app` process: the model is exported in a
child process, so the serving process never loads torch (which it would keep mapped, and about 1 GiB
resident, for its lifetime), and the export's progress still shows in the server's log."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.clients.live_server import live_server
from tests.reliability.conftest import BASE_ENV

FIRST_START_TIMEOUT_S = 600  # an export of the tiny model: seconds on a quiet machine, minutes on a busy one


def mapped_torch_files(pid: int) -> list[str]:
    """Shared objects and files of the torch package mapped into the process."""
    paths = {line.split(maxsplit=5)[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return sorted(path for path in paths if "libtorch" in path or "/torch/" in path)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_a_server_that_exports_its_model_on_first_start_serves_without_torch(
    tmp_path: Path, tiny_mlm_checkpoint: Path
) -> None:
    cache = tmp_path / "cache"
    env = {**BASE_ENV, "DISTILSERVE_MODEL_SOURCE": str(tiny_mlm_checkpoint), "DISTILSERVE_CACHE_DIR": str(cache)}
    with live_server(None, tmp_path, env, start_timeout_s=FIRST_START_TIMEOUT_S) as server:
        assert mapped_torch_files(server.process.pid) == []
        (model,) = httpx.get(f"{server.url}/info", timeout=10).json()["models"]
        assert str(cache / "exports") in model["model_selection_reason"]
        log = server.log()
    assert "[export] fusing" in log and "[export] wrote" in log, "the export's progress lines reach the log"
    assert "INFO fusion_base" not in log and "Fused Attention" not in log, "onnxruntime's INFO lines stay out"
