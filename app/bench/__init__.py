"""`make bench`: the served model compared, in one run on one machine, with what the machine gives in
process and with what users would run instead.

    python -m app.bench [MODEL_DIR] [--quick] [--duration S] [--concurrency 1,8,32,128] [--json PATH]

On the shipped mixed-length text set (app/data/bench/, `texts`):
1. In process (`inprocess`): the ceiling (a bare onnxruntime session on the served variant, texts
   sorted by length, batches of 32); the server's backend one input at a time and in arrival-order
   batches; sentence-transformers `encode` and transformers' fill-mask pipeline on the checkpoint.
2. Over HTTP (`http`): `python -m app` in a subprocess driven by a closed-loop keep-alive client at
   each concurrency, with 32-sentence requests, and fill-mask at concurrency 8; padding waste and
   mean batch from the server's /metrics. Optionally Infinity on the same load (`peers`).
3. A table, a JSON document with every throughput as a ratio to the ceiling, and a PNG (`report`, `plot`).

Settings come from DISTILSERVE_* like the server's, so both sides run the same configuration.
"""

from app.bench.cli import main
from app.bench.http import KeepAliveClient, Server, ServerError, drive, measure_http, running_server, scrape
from app.bench.inprocess import open_backend
from app.bench.rows import Row, percentile
from app.bench.texts import as_task, load_bench_texts, load_sentences

__all__ = [
    "KeepAliveClient", "Row", "Server", "ServerError", "as_task", "drive", "load_bench_texts", "load_sentences",
    "main", "measure_http", "open_backend", "percentile", "running_server", "scrape",
]
