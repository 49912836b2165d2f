"""Raw cells: time-boxed, skipped when they cannot fit, and placement read from the profiler."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from model_export.manifest import SpecialToken, SpecialTokens

from app.backend import BackendInfo, ItemOutput, TokenBatch
from app.gpu_check import raw
from app.gpu_check.plan import now

SPECIAL = SpecialTokens(
    cls=SpecialToken(id=101, token="[CLS]"), sep=SpecialToken(id=102, token="[SEP]"), pad=SpecialToken(id=0, token="[PAD]"),
    mask=SpecialToken(id=103, token="[MASK]"), unk=SpecialToken(id=100, token="[UNK]"),
)


class SleepingBackend:
    """Takes `per_token` seconds per padded token; fails at `fail_at` tokens or more."""

    is_padded = True

    def __init__(self, per_token: float, fail_at: int | None = None) -> None:
        self.per_token, self.fail_at = per_token, fail_at
        self.info = BackendInfo("fp32", "float32", ["CPUExecutionProvider"], ["CPUExecutionProvider"], False)
        self.batches: list[TokenBatch] = []

    def run(self, batch: TokenBatch) -> list[ItemOutput]:
        tokens = len(batch) * int(batch.lengths.max())
        if self.fail_at is not None and tokens >= self.fail_at:
            raise MemoryError("out of memory")
        self.batches.append(batch)
        time.sleep(self.per_token * tokens)
        return [ItemOutput(np.zeros(4, dtype=np.float32), None) for _ in range(len(batch))]


def test_time_runs_warms_up_then_times_at_least_min_runs() -> None:
    calls = []
    timing = raw.time_runs(lambda: calls.append(1), seconds=0.0, deadline=now() + 10, min_runs=3)
    assert timing.runs == 3 and len(calls) == 4
    assert timing.p50_ms <= timing.p90_ms <= timing.p99_ms


def test_time_runs_stops_at_the_deadline_after_one_timed_run() -> None:
    calls = []
    timing = raw.time_runs(lambda: (calls.append(1), time.sleep(0.01)), seconds=5.0, deadline=now() - 1, min_runs=3)
    assert timing.runs == 1 and len(calls) == 2


def test_time_runs_runs_for_the_seconds_asked() -> None:
    timing = raw.time_runs(lambda: time.sleep(0.005), seconds=0.1, deadline=now() + 10)
    assert 0.1 <= timing.seconds < 0.3 and timing.runs >= 10


def test_the_grid_measures_every_cell_that_fits() -> None:
    backend = SleepingBackend(per_token=1e-7)
    cells, skipped = raw.run_grid(backend, "m", "fp32", (8, 16), (1, 4), SPECIAL, 30522, "fill-mask", 0.01, now() + 30)
    assert [(c.seq, c.batch) for c in cells] == [(8, 1), (8, 4), (16, 1), (16, 4)] and skipped == []
    assert all(c.sequences_per_s > 0 and c.tokens_per_s == pytest.approx(c.sequences_per_s * c.seq) for c in cells)
    assert all(c.provider == "CPUExecutionProvider" and c.runs >= 3 for c in cells)
    assert all((batch.ids == 103).sum() == len(batch) for batch in backend.batches)  # one mask per sequence


def test_cells_that_would_overrun_their_time_box_are_skipped() -> None:
    """Batch 64 after batch 1 took ~10 ms is estimated at over a second: skipped, not run."""
    backend = SleepingBackend(per_token=1e-3)
    cells, skipped = raw.run_grid(backend, "m", "fp16", (10,), (1, 64), SPECIAL, 30522, "embed", 0.0, now() + 0.5)
    assert [(c.seq, c.batch) for c in cells] == [(10, 1)]
    assert [s.what for s in skipped] == ["raw m fp16 seq 10 batch 64"] and "time box" in skipped[0].reason
    assert max(len(batch) for batch in backend.batches) == 1


def test_a_failing_cell_ends_its_length_and_says_why() -> None:
    backend = SleepingBackend(per_token=0.0, fail_at=64)
    cells, skipped = raw.run_grid(backend, "m", "fp32", (16, 4), (1, 4, 16), SPECIAL, 30522, "embed", 0.0, now() + 30)
    assert [(c.seq, c.batch) for c in cells] == [(16, 1), (4, 1), (4, 4)]
    assert [(s.what, s.reason) for s in skipped] == [
        ("raw m fp32 seq 16 batch 4", "failed: MemoryError: out of memory"),
        ("raw m fp32 seq 4 batch 16", "failed: MemoryError: out of memory"),
    ]


def test_mixed_lengths_measure_padding_in_arrival_and_sorted_order() -> None:
    backend = SleepingBackend(per_token=0.0)
    rng = np.random.default_rng(0)
    sequences = [np.full(int(n), 7, dtype=np.int64) for n in rng.integers(3, 40, size=64)]
    cells, skipped = raw.run_mixed(backend, "m", "fp32", sequences, "embed", (8,), 0.01, now() + 30)
    assert skipped == []
    by_order = {cell.order: cell for cell in cells}
    assert set(by_order) == {"arrival", "by length"}
    assert by_order["arrival"].padding_waste > 0.3 > by_order["by length"].padding_waste >= 0
    assert all(cell.path == "raw" and cell.batch == 8 and cell.real_tokens_per_s > 0 for cell in cells)


def test_mixed_cells_that_cannot_fit_or_fill_a_batch_are_skipped() -> None:
    sequences = [np.full(10, 7, dtype=np.int64) for _ in range(20)]
    cells, skipped = raw.run_mixed(SleepingBackend(per_token=1e-3), "m", "fp32", sequences, "embed", (2, 16, 32), 0.0, now() + 0.4)
    assert [(cell.batch, cell.order) for cell in cells] == [(2, "arrival"), (2, "by length")]
    assert [s.what.removeprefix("raw m fp32 mixed lengths ") for s in skipped] == [
        "batch 16 arrival", "batch 16 by length", "batch 32 arrival", "batch 32 by length",
    ]


def test_placement_flags_only_model_sized_tensors_off_the_provider() -> None:
    def node(op: str, provider: str, shape: list[int]) -> dict:
        return {"cat": "Node", "name": f"{op}_1_kernel_time", "args": {"op_name": op, "provider": provider, "input_type_shape": [{"float": shape}]}}

    events = [
        node("Attention", "CUDAExecutionProvider", [4, 64, 768]),
        node("Shape", "CPUExecutionProvider", [4, 64]),
        node("Gather", "CPUExecutionProvider", [2]),
        node("SkipLayerNormalization", "CPUExecutionProvider", [4, 64, 768]),
        node("MemcpyToHost", "CUDAExecutionProvider", [4, 768]),
        {"cat": "Session", "name": "model_run", "args": {}},
    ]
    summary = raw.summarize_placement(events, "CUDAExecutionProvider", ids_size=4 * 64)
    assert summary["nodes_by_provider"] == {"CUDAExecutionProvider": 2, "CPUExecutionProvider": 3}
    assert summary["ops_elsewhere"] == {"Shape": 1, "Gather": 1, "SkipLayerNormalization": 1}
    assert summary["fallbacks"] == ["SkipLayerNormalization (SkipLayerNormalization_1, 196608 elements)"]
    assert summary["copies"] == ["MemcpyToHost (MemcpyToHost_1, 3072 elements)"]


def test_placement_reads_a_real_profile(tiny_encoder_model_dir: Path, tmp_path: Path) -> None:
    summary = raw.placement(
        tiny_encoder_model_dir / "model.fp32.onnx", ["CPUExecutionProvider"], "CPUExecutionProvider", 2, 16, SPECIAL,
        30522, None, tmp_path,
    )
    assert summary["nodes_by_provider"]["CPUExecutionProvider"] > 10 and summary["fallbacks"] == []
    assert list(tmp_path.iterdir()) == []  # the profile is removed
    elsewhere = raw.placement(
        tiny_encoder_model_dir / "model.fp32.onnx", ["CPUExecutionProvider"], "CUDAExecutionProvider", 2, 16, SPECIAL,
        30522, None, tmp_path,
    )
    assert any(entry.startswith("Attention") for entry in elsewhere["fallbacks"])


def test_cells_are_plain_records() -> None:
    cell = raw.RawCell("m", "fp16", "CUDAExecutionProvider", 128, 8, 10, 100.0, 12800.0, 1.0, 2.0, 3.0)
    assert SimpleNamespace(**vars(cell)).seq == 128
