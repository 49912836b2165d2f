"""A dynamic batcher generic over its items. It knows token counts, not HTTP and not ONNX.

Promises (each has a test in tests/app/test_batcher.py):
- each submitted item is its own queue entry, and every accepted entry's future gets a result or an error;
- a batch holds at most `max_batch_size` items, `max_batch_tokens` tokens of cost (longest item x
  count for a backend that pads, the sum of lengths for one that does not) and `max_batch_rows`
  output rows, built around the oldest entry from entries of similar length; for a backend that
  pads, with a cost model (app/cost_model.py), the batch that costs least per real token, so a CPU
  runs several small batches of similar length rather than one large ragged one;
- the oldest entry waits at most `max_wait_s` for company; entries left over by the last plan go at once;
- a full queue refuses a submission at once (`Overloaded`), all or nothing;
- entries whose future was cancelled (the client went away) are dropped, never run;
- a failure while preparing or running a batch fails that batch's entries only;
- if the loop itself dies, every pending entry fails and `healthy` turns False;
- `run` happens on `workers` inference threads (one by default), so the event loop stays free and one
  warm session serves every batch, up to `workers` batches at once; when two full batches wait while
  every worker is busy, `prepare` of the next batch overlaps the running ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from app.cost_model import CostModel
from app.errors import BackendError, Overloaded, ServiceError, Unhealthy

log = logging.getLogger("distilserve.batcher")

ItemT = TypeVar("ItemT")
PreparedT = TypeVar("PreparedT")
OutputT = TypeVar("OutputT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
OutputT_co = TypeVar("OutputT_co", covariant=True)


class BatchProcessor(Protocol[ItemT, PreparedT, OutputT]):
    def prepare(self, items: Sequence[ItemT]) -> PreparedT:
        """Collate a batch (on the event loop, while the previous batch runs). Must be quick."""
        ...

    def run(self, prepared: PreparedT) -> Sequence[OutputT | Exception]:
        """Run a batch on the worker thread: one output (or an Exception for that item) per item, in order."""
        ...


@dataclass(frozen=True)
class ItemResult(Generic[OutputT]):
    value: OutputT
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass(frozen=True)
class BatchStats:
    size: int
    padded_tokens: int
    real_tokens: int
    inference_s: float
    failed: bool

    @property
    def padding_ratio(self) -> float:
        return 1.0 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0


@dataclass(eq=False)
class _Entry(Generic[ItemT]):
    item: ItemT
    length: int
    rows: int
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)


def batch_cost(lengths: Sequence[int], padded: bool) -> int:
    """Tokens a batch costs: longest x count when the backend pads, else the sum of the lengths."""
    if not lengths:
        return 0
    return max(lengths) * len(lengths) if padded else sum(lengths)


def plan_batch(
    lengths: Sequence[int],
    max_batch_tokens: int,
    max_batch_size: int,
    *,
    padded: bool = True,
    rows: Sequence[int] | None = None,
    max_rows: int | None = None,
    cost_model: CostModel | None = None,
) -> list[int]:
    """Choose queue positions for the next batch; `lengths` is in arrival order.

    The oldest entry is always taken (so nothing starves), and the batch's cost (`batch_cost`) stays
    within the token budget, its size within `max_batch_size` and, when given, the sum of the entries'
    `rows` (output rows such as fill-mask logits) within `max_rows`. The result is sorted by length.

    With a `cost_model` and a backend that pads, the batch is the one that costs least per real token
    (`plan_by_cost`); otherwise entries are added closest length first until a budget is reached.
    """
    if not lengths:
        return []
    if padded and cost_model is not None:
        return plan_by_cost(lengths, max_batch_tokens, max_batch_size, cost_model, rows=rows, max_rows=max_rows)
    head = lengths[0]
    chosen = [0]
    longest, total, taken_rows = head, head, rows[0] if rows else 0
    order = sorted(range(1, len(lengths)), key=lambda index: (abs(lengths[index] - head), index))
    for index in order:
        if len(chosen) >= max_batch_size:
            break
        candidate_longest = max(longest, lengths[index])
        cost = candidate_longest * (len(chosen) + 1) if padded else total + lengths[index]
        extra_rows = rows[index] if rows else 0
        if cost > max_batch_tokens or (max_rows is not None and taken_rows + extra_rows > max_rows):
            continue
        chosen.append(index)
        longest, total, taken_rows = candidate_longest, total + lengths[index], taken_rows + extra_rows
    return sorted(chosen, key=lambda index: (lengths[index], index))


def plan_by_cost(
    lengths: Sequence[int],
    max_batch_tokens: int,
    max_batch_size: int,
    cost_model: CostModel,
    *,
    rows: Sequence[int] | None = None,
    max_rows: int | None = None,
) -> list[int]:
    """The batch around the oldest entry (position 0) with the least estimated cost per real token.

    For a padded length L and a size n the cost is fixed, so the best batch of that shape takes the n - 1
    longest entries no longer than L (older first among equals): every (L, n) is one candidate, scored
    at once with prefix sums. Padding a short input to a long one costs more than running it later in
    a batch of its own length, unless the per-batch overhead outweighs that; the cost model decides.
    Among candidates that cost the same per token, the one with the most real tokens wins (it drains
    the queue fastest).
    """
    head = lengths[0]
    # The others by length, older first among equals at the top of each run of equal lengths.
    others = sorted(range(1, len(lengths)), key=lambda index: (lengths[index], -index))
    sorted_lengths = np.array([lengths[index] for index in others], dtype=np.int64)
    token_sums = np.concatenate([[0], np.cumsum(sorted_lengths)])
    padded_lengths = np.unique(np.concatenate([[head], sorted_lengths[sorted_lengths >= head]]))
    eligible = np.searchsorted(sorted_lengths, padded_lengths, side="right")[:, None]  # entries <= L
    extra = np.arange(max_batch_size)[None, :]  # entries besides the head
    length = padded_lengths[:, None]
    feasible = (extra <= eligible) & ((extra + 1) * length <= max_batch_tokens)
    first = np.maximum(eligible - extra, 0)
    if rows is not None and max_rows is not None:
        row_sums = np.concatenate([[0], np.cumsum([rows[index] for index in others])])
        feasible &= rows[0] + row_sums[eligible] - row_sums[first] <= max_rows
    real = head + token_sums[eligible] - token_sums[first]
    cost = cost_model.overhead_s + (extra + 1) * length * (cost_model.per_token_s + cost_model.per_token_length_s * length)
    per_token = np.where(feasible, cost / real, np.inf)
    near_best = per_token <= per_token.min() * (1 + 1e-9)
    best = np.unravel_index(np.argmax(np.where(near_best, real, -1)), real.shape)
    end, count = int(eligible[best[0], 0]), int(extra[0, best[1]])
    chosen = [0, *others[end - count : end]]
    return sorted(chosen, key=lambda index: (lengths[index], index))


class Batcher(Generic[ItemT, PreparedT, OutputT]):
    def __init__(
        self,
        processor: BatchProcessor[ItemT, PreparedT, OutputT],
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        retry_after_s: int = 1,
        on_batch: Callable[[BatchStats], None] | None = None,
        planning_window: int | None = None,
        padded: bool = True,
        max_batch_rows: int | None = None,
        cost_model: CostModel | None = None,
        workers: int = 1,
    ) -> None:
        self._processor = processor
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.padded = padded
        self.max_batch_rows = max_batch_rows
        # Replaced once the runtime has calibrated it; None plans by token budget alone.
        self.cost_model = cost_model
        self.workers = workers
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._on_batch = on_batch
        # Planning looks at this many of the oldest entries, so a long queue costs O(window) per batch.
        self._window = planning_window or max(8 * max_batch_size, 64)
        self._queue: deque[_Entry[ItemT]] = deque()
        self._queued_tokens = 0
        self._changed = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="distilserve-infer")
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False
        self._failure: str | None = None

    @property
    def healthy(self) -> bool:
        return self._failure is None and self._task is not None and not self._task.done()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop_guarded(), name="distilserve-batcher")

    async def call_in_worker(self, function: Callable[[], Any]) -> Any:
        """Run `function` on an inference thread (warm-up, calibration), alongside batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def submit(
        self, items: Sequence[ItemT], lengths: Sequence[int], rows: Sequence[int] | None = None
    ) -> list[asyncio.Future[ItemResult[OutputT]]]:
        """Queue every item, or none: raises Overloaded when they do not all fit, Unhealthy when stopped.

        `rows` are the items' output rows (fill-mask logits), bounded per batch by `max_batch_rows`."""
        rows = rows if rows is not None else [0] * len(items)
        if not len(items) == len(lengths) == len(rows):
            raise ValueError("one length and one row count per item")
        if self._failure is not None:
            raise Unhealthy(f"the batching loop has stopped: {self._failure}")
        if self._closing or self._task is None:
            raise Unhealthy("the server is shutting down" if self._closing else "the batcher is not running")
        if len(self._queue) + len(items) > self.max_queue:
            raise Overloaded(
                f"queue full ({len(self._queue)} of {self.max_queue} inputs waiting); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        too_long = [length for length in lengths if length > self.max_batch_tokens]
        if too_long:
            raise ValueError(f"an item of {too_long[0]} tokens can never fit max_batch_tokens={self.max_batch_tokens}")
        if self.max_batch_rows is not None and any(count > self.max_batch_rows for count in rows):
            raise ValueError(f"an item has more than max_batch_rows={self.max_batch_rows} output rows")
        loop = asyncio.get_running_loop()
        futures = []
        for item, length, count in zip(items, lengths, rows, strict=True):
            entry: _Entry[ItemT] = _Entry(item, length, count, loop.create_future())
            self._queue.append(entry)
            self._queued_tokens += length
            futures.append(entry.future)
        self._changed.set()
        return futures

    async def close(self) -> None:
        """Stop accepting, finish everything queued and running, then stop the loop."""
        self._closing = True
        self._changed.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # already logged by the guard
                pass
        self._executor.shutdown(wait=True)

    async def _loop_guarded(self) -> None:
        try:
            await self._loop()
        except BaseException as error:
            self._failure = f"{type(error).__name__}"
            if not isinstance(error, asyncio.CancelledError):
                log.exception("batching loop died; failing every pending input")
            self._fail_pending(Unhealthy("the batching loop stopped; the server is unhealthy"))
            raise

    def _fail_pending(self, error: ServiceError) -> None:
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(error)
        self._queued_tokens = 0

    def _full_batch_waiting(self, batches: int = 1) -> bool:
        return len(self._queue) >= batches * self.max_batch_size or self._queued_tokens >= batches * self.max_batch_tokens

    async def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> None:
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not ready():
            self._changed.clear()
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def _worker_idle(self) -> bool:
        return len(self._running) < self.workers

    def _join_wait_s(self) -> float:
        """What is left of the oldest entry's short wait for company: entries left over from the last
        plan have waited already, so they go at once and the worker runs small batches back to back."""
        if not self._queue:
            return self.max_wait_s
        return max(0.0, self.max_wait_s - (time.perf_counter() - self._queue[0].enqueued))

    async def _loop(self) -> None:
        while True:
            await self._wait_until(lambda: bool(self._queue) or self._closing, None)
            if not self._queue:
                break  # closing and drained
            if self._worker_idle():
                # A short wait lets concurrent requests join; a full batch or shutdown goes at once.
                if not self._closing:
                    await self._wait_until(lambda: self._full_batch_waiting() or self._closing, self._join_wait_s())
            else:
                # Every worker is busy: keep collecting until one frees up. Prepare early only when two full
                # batches wait, so the planner still has lengths to choose from (less padding).
                await self._wait_until(lambda: self._worker_idle() or self._full_batch_waiting(2), None)
            batch = self._take_batch()
            if not batch:
                continue
            try:
                prepared = self._processor.prepare([entry.item for entry in batch])
            except Exception:
                log.exception("preparing a batch of %d failed; failing that batch only", len(batch))
                self._fail_batch(batch, BackendError("inference failed"))
                continue
            while not self._worker_idle():
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            running = asyncio.get_running_loop().create_task(self._run_batch(batch, prepared))
            self._running.add(running)
            running.add_done_callback(self._batch_done)
        if self._running:
            await asyncio.wait(self._running)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._changed.set()

    def _take_batch(self) -> list[_Entry[ItemT]]:
        while self._queue and self._queue[0].future.done():  # cancelled by a departed client
            self._queued_tokens -= self._queue.popleft().length
        window = [entry for entry in list(self._queue)[: self._window] if not entry.future.done()]
        positions = plan_batch(
            [entry.length for entry in window],
            self.max_batch_tokens,
            self.max_batch_size,
            padded=self.padded,
            rows=[entry.rows for entry in window] if self.max_batch_rows is not None else None,
            max_rows=self.max_batch_rows,
            cost_model=self.cost_model,
        )
        batch = [window[position] for position in positions]
        taken = set(map(id, batch))
        remaining: deque[_Entry[ItemT]] = deque()
        for entry in self._queue:
            if id(entry) in taken:
                continue
            if entry.future.done():
                self._queued_tokens -= entry.length
                continue
            remaining.append(entry)
        self._queue = remaining
        self._queued_tokens -= sum(entry.length for entry in batch)
        return batch

    def _fail_batch(self, batch: Sequence[_Entry[ItemT]], error: ServiceError) -> None:
        for entry in batch:
            if not entry.future.done():
                entry.future.set_exception(error)

    async def _run_batch(self, batch: list[_Entry[ItemT]], prepared: PreparedT) -> None:
        started = time.perf_counter()
        lengths = [entry.length for entry in batch]
        failed = False
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed_run, prepared)
            values, inference_s = outputs
            if len(values) != len(batch):
                raise RuntimeError(f"backend returned {len(values)} outputs for {len(batch)} inputs")
        except Exception:
            log.exception("a batch of %d inputs failed; failing that batch only", len(batch))
            self._fail_batch(batch, BackendError("inference failed"))
            failed = True
            inference_s = time.perf_counter() - started
        else:
            for entry, value in zip(batch, values, strict=True):
                if entry.future.done():
                    continue
                if isinstance(value, Exception):
                    entry.future.set_exception(value)
                else:
                    entry.future.set_result(ItemResult(value, started - entry.enqueued, inference_s, len(batch)))
        if self._on_batch is not None:
            try:
                cost = batch_cost(lengths, self.padded)
                self._on_batch(BatchStats(len(batch), cost, sum(lengths), inference_s, failed))
            except Exception:
                log.exception("batch statistics callback failed")

    def _timed_run(self, prepared: PreparedT) -> tuple[Sequence[OutputT | Exception], float]:
        started = time.perf_counter()
        values = self._processor.run(prepared)
        return values, time.perf_counter() - started
