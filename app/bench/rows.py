"""One measurement, whatever did it: in process, over HTTP, or a peer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    mode: str
    concurrency: int  # clients in flight; in process, the batch size
    requests: int  # requests (HTTP) or runs (in process) measured
    throughput: float  # sentences per second
    p50_ms: float  # per request (HTTP) or per run (in process)
    p90_ms: float
    p99_ms: float
    mean_batch: float
    padding_waste: float  # share of computed tokens that were padding
    sentences_per_request: int = 1
    errors: int = 0  # responses that were not 200
    note: str = ""  # how it was measured, when that differs from the mode's usual way


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def latency_row(mode: str, concurrency: int, sentences: int, elapsed: float, run_times: list[float],
                mean_batch: float, padding_waste: float, note: str = "") -> Row:
    """A row for `sentences` done in `elapsed` seconds over runs that took `run_times` seconds each."""
    return Row(mode, concurrency, len(run_times), sentences / elapsed,
               *(percentile(run_times, q) * 1000 for q in (50, 90, 99)), mean_batch, padding_waste, note=note)
