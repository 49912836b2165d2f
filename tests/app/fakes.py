"""A deterministic stand-in backend for API tests (in tests, not in production code)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.backend import BackendInfo, ItemOutput, TokenBatch


@dataclass
class FakeClock:
    """A timer that moves only when told: calibration reads it instead of the wall clock."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeBackend:
    """Outputs depend only on each item's own ids (never on its batch).

    `delay_s` sleeps per batch, `delay_per_token_s` per real token (a predictable throughput);
    `fail_if(batch)` raising or returning True fails the batch; `batches` records each batch's real
    lengths for the batching tests; `is_padded` says which cost the batcher plans with. With a `clock`,
    each batch advances it by `run_time(rows, longest)` instead of sleeping: a known cost to calibrate.
    """

    hidden_size: int = 8
    vocab_size: int = 64
    salt: int = 0  # another salt, other embeddings: tells two fake models apart
    mask_id: int | None = 3
    delay_s: float = 0.0
    delay_per_token_s: float = 0.0
    fail_if: Callable[[TokenBatch], Any] | None = None
    is_padded: bool = True
    batches: list[list[int]] = field(default_factory=list)
    clock: FakeClock | None = None
    run_time: Callable[[int, int], float] = lambda rows, length: 0.0
    info: BackendInfo = field(
        default_factory=lambda: BackendInfo("fp32", "float32", ["FakeExecutionProvider"], ["FakeExecutionProvider"], False)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def embedding(self, ids: np.ndarray) -> np.ndarray:
        frequencies = np.arange(1, self.hidden_size + 1) + self.salt
        rows = np.stack([np.cos(frequencies * (int(token) % 997 + 1)) for token in ids])
        return rows.mean(axis=0).astype(np.float32)

    def logits(self, ids: np.ndarray, position: int) -> np.ndarray:
        before = int(ids[position - 1]) if position > 0 else 0
        vocab = np.arange(self.vocab_size, dtype=np.float32)
        return (np.sin(vocab * 0.37 + before + position) * 4.0).astype(np.float32)

    def run(self, batch: TokenBatch) -> list[ItemOutput]:
        lengths = batch.lengths
        with self._lock:
            self.batches.append([int(length) for length in lengths])
        if self.clock is not None:
            self.clock.now += self.run_time(len(lengths), int(lengths.max()))
        delay = self.delay_s + self.delay_per_token_s * int(lengths.sum())
        if delay:
            time.sleep(delay)
        if self.fail_if is not None and self.fail_if(batch):
            raise RuntimeError("fake backend failure")
        return [self._output(batch.item_ids(index)) for index in range(len(batch))]

    def _output(self, ids: np.ndarray) -> ItemOutput:
        logits = None
        if self.mask_id is not None:
            positions = np.flatnonzero(ids == self.mask_id)
            logits = np.zeros((len(positions), self.vocab_size), dtype=np.float32)
            for row, position in enumerate(positions):
                logits[row] = self.logits(ids, int(position))
        return ItemOutput(self.embedding(ids), logits)

    def forget_batches(self) -> None:
        with self._lock:
            self.batches.clear()


def factory(backend: FakeBackend | dict[str, FakeBackend]) -> Callable[..., FakeBackend]:
    """A backend factory for create_app: this one backend, or one per model id."""

    def build(path: Path, manifest: Any, options: Any, limits: Any) -> FakeBackend:
        return backend[manifest.model_id] if isinstance(backend, dict) else backend

    return build
