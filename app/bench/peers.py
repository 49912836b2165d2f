"""Other embedding servers, driven by the same client on the same texts in the same run (opt-in).

Infinity (infinity_emb, the Python v2 server) pins transformers 4 and numpy 1, so it cannot share
this environment: install it into its own virtual environment (e.g. `pip install
"infinity_emb[server]==0.0.78"` where torch is already importable, so pip pulls no CUDA wheels) and
pass its `infinity_emb` executable to `--infinity`. It serves, with its torch engine on CPU, the
checkpoint the model directory was exported from; its output goes to a temporary log kept on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from app.bench.http import ServerError, drive, free_port, measure_closed_loop, running_process
from app.bench.rows import Row

INFINITY_MODEL_NAME = "bench"


def find_infinity(executable: str) -> str:
    """The infinity_emb executable asked for, or a SystemExit that says how to get one."""
    # The venv's own bin first: `.venv/bin/python -m app.bench` does not put it on PATH.
    found = shutil.which(executable, path=str(Path(sys.executable).parent)) or shutil.which(executable)
    if found is None:
        raise SystemExit(
            f"bench: --infinity: {executable!r} is not an executable on PATH; install infinity_emb into its own "
            "virtual environment (it downgrades transformers and numpy) and pass the path of its infinity_emb"
        )
    return found


def infinity_rows(executable: str, checkpoint: Path, texts: list[str], concurrencies: list[int], duration: float,
                  request_sentences: int, request_concurrency: int, threads: int) -> list[Row]:
    """Infinity's torch engine on CPU at each concurrency, then with `request_sentences`-sentence requests."""
    port = free_port()
    command = [executable, "v2", "--model-id", str(checkpoint), "--served-model-name", INFINITY_MODEL_NAME,
               "--engine", "torch", "--device", "cpu", "--batch-size", "32", "--port", str(port)]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), INFINITY_ANONYMOUS_USAGE_STATS="0")

    def body(inputs: list[str]) -> bytes:
        return json.dumps({"model": INFINITY_MODEL_NAME, "input": inputs}).encode()

    singles = [body([text]) for text in texts]
    rows = []
    log = tempfile.NamedTemporaryFile("w", prefix="bench-infinity-", suffix=".log", delete=False)
    try:
        with log, running_process(command, port, "/health", environment, 600, log) as server:
            asyncio.run(drive(server.port, "/embeddings", singles, 4, min(2.0, duration)))
            for concurrency in concurrencies:
                rows.append(measure_closed_loop(server, "/embeddings", singles, concurrency, duration, mode="infinity"))
            if request_sentences and len(texts) >= request_sentences:
                groups = [body(texts[start:start + request_sentences])
                          for start in range(0, len(texts) - request_sentences + 1, request_sentences)]
                rows.append(measure_closed_loop(server, "/embeddings", groups, request_concurrency, duration,
                                                sentences_per_request=request_sentences, mode="infinity"))
    except ServerError as error:
        raise SystemExit(f"bench: infinity: {error}; its output is in {log.name}") from None
    Path(log.name).unlink()
    return rows
