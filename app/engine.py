"""The model-agnostic engine: validate and tokenize, queue, infer, post-process. No HTTP here.

Routes (ours and the OpenAI / HF / TEI dialects) call `embed`, `embed_ids` and `fill_mask` and get
the answer plus its stage timings; errors are ServiceErrors that the handlers render.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_export.manifest import Manifest

from app import tasks
from app.backend import Backend, ItemOutput, PaddedBatch
from app.batcher import Batcher, ItemResult
from app.errors import InvalidInput, Unhealthy
from app.metrics import Metrics
from app.providers import ShapeLimits
from app.settings import Settings
from app.tokenizer import Direction, TextTokenizer

log = logging.getLogger("distilserve.engine")


@dataclass(frozen=True)
class Timings:
    tokenization_s: float
    queue_s: float
    inference_s: float
    total_s: float

    def headers(self) -> dict[str, str]:
        """TEI's timing headers, in milliseconds."""
        return {
            "x-tokenization-time": f"{self.tokenization_s * 1000:.3f}",
            "x-queue-time": f"{self.queue_s * 1000:.3f}",
            "x-inference-time": f"{self.inference_s * 1000:.3f}",
            "x-total-time": f"{self.total_s * 1000:.3f}",
        }


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: np.ndarray  # [inputs, hidden] float32, pooled, not normalized
    token_counts: list[int]  # tokens per input, special tokens included
    timings: Timings


class _BackendProcessor:
    """Adapts a Backend to the batcher's prepare/run contract."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def prepare(self, items: Sequence[np.ndarray]) -> PaddedBatch:
        return self.backend.prepare(items)

    def run(self, prepared: PaddedBatch) -> Sequence[ItemOutput]:
        return self.backend.run(prepared)


class Engine:
    # Texts are tokenized on the event loop, one request at a time; /info reports it as TEI's field.
    tokenization_workers = 1

    def __init__(
        self, settings: Settings, manifest: Manifest, tokenizer: TextTokenizer, backend: Backend, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.backend = backend
        self.metrics = metrics
        self.limits = ShapeLimits(settings.max_batch_size, settings.max_batch_tokens, tokenizer.max_length)
        self.batcher: Batcher[np.ndarray, PaddedBatch, ItemOutput] = Batcher(
            _BackendProcessor(backend),
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            retry_after_s=settings.retry_after_s,
            on_batch=metrics.observe_batch,
        )
        self.warmed = False
        self.warmup_error: str | None = None
        self._warmup_task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.warmed and self.batcher.healthy

    @property
    def alive(self) -> bool:
        return self.warmup_error is None and (self.batcher.healthy or self._warmup_task is None)

    async def start(self) -> None:
        self.batcher.start()
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up())

    async def stop(self) -> None:
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        await self.batcher.close()

    async def _warm_up(self) -> None:
        # Runs on the inference thread, so requests that arrive meanwhile queue behind it.
        shapes = self.limits.warmup_shapes() if self.settings.warmup else []
        started = time.perf_counter()
        try:
            await self.batcher.call_in_worker(lambda: self.backend.warm_up(shapes, self.tokenizer.mask_id))
        except Exception as error:
            self.warmup_error = f"{type(error).__name__}"
            log.exception("warm-up at shapes %s failed; the server will not report ready", shapes)
            return
        self.warmed = True
        log.info("ready: warmed up at %s in %.2fs", shapes, time.perf_counter() - started)

    def check_limits(self, count: int) -> None:
        if count > self.settings.max_inputs_per_request:
            raise InvalidInput(
                f"{count} inputs in one request; this server accepts at most {self.settings.max_inputs_per_request}"
            )

    def require_task(self, task: str) -> None:
        if task not in self.manifest.tasks:
            raise InvalidInput(f"this model serves {self.manifest.tasks}, not {task}")

    async def _infer(
        self, sequences: list[np.ndarray], tokenization_s: float, started: float
    ) -> tuple[list[ItemOutput], Timings]:
        if self.warmup_error is not None:
            raise Unhealthy("the model failed to warm up; see the server log")
        futures = self.batcher.submit(sequences, [len(ids) for ids in sequences])
        self.metrics.queue_depth.set(self.batcher.queue_depth)
        try:
            results: list[ItemResult[ItemOutput]] = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:  # the client went away or a sibling failed: drop what has not run
                future.cancel()
            raise
        finally:
            self.metrics.queue_depth.set(self.batcher.queue_depth)
        queue_s = max(result.queue_s for result in results)
        inference_s = max(result.inference_s for result in results)
        timings = Timings(tokenization_s, queue_s, inference_s, time.perf_counter() - started)
        self.metrics.observe_stages(timings.tokenization_s, timings.queue_s, timings.inference_s, timings.total_s)
        return [result.value for result in results], timings

    async def embed(
        self,
        texts: Sequence[str],
        *,
        normalize: bool = True,
        truncate: bool = False,
        direction: Direction = "right",
        dimensions: int | None = None,
    ) -> tuple[list[list[float]], Timings]:
        """TEI /embed semantics: one float list per text."""
        self.check_dimensions(dimensions)
        result = await self.embeddings(texts=texts, truncate=truncate, direction=direction)
        return [tasks.embedding(vector, normalize, dimensions) for vector in result.vectors], result.timings

    async def embeddings(
        self,
        *,
        texts: Sequence[str] | None = None,
        ids: Sequence[Sequence[int]] | None = None,
        truncate: bool = False,
        direction: Direction = "right",
    ) -> EmbeddingResult:
        """Raw pooled embeddings (not normalized) for texts, or for pre-tokenized ids (OpenAI token-id
        inputs, wrapped in [CLS] ... [SEP] unless already), with the token count of each input."""
        started = time.perf_counter()
        self.require_task("embed")
        count = len(texts) if texts is not None else len(ids or [])
        self.check_limits(count)
        if texts is not None:
            sequences = self.tokenizer.encode(texts, truncate=truncate, direction=direction)
        else:
            sequences = self.tokenizer.encode_ids(ids or [], truncate=truncate, direction=direction)
        tokenization_s = time.perf_counter() - started
        outputs, timings = await self._infer(sequences, tokenization_s, started)
        self.metrics.inputs.labels("embed").inc(len(outputs))
        vectors = np.stack([output.embedding for output in outputs]).astype(np.float32, copy=False)
        return EmbeddingResult(vectors, [len(ids) for ids in sequences], timings)

    async def fill_mask(
        self, texts: Sequence[str], *, top_k: int = 5, targets: Sequence[str] | None = None
    ) -> tuple[list[Any], Timings]:
        """One pipeline-shaped answer per text."""
        started = time.perf_counter()
        self.require_task("fill-mask")
        self.check_limits(len(texts))
        if not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self.settings.max_top_k}, got {top_k}")
        target_ids = None
        if targets is not None:
            target_ids = tasks.target_ids(targets, self.tokenizer.token_to_id, self.tokenizer.first_piece)
            if target_ids is None:
                raise InvalidInput("targets: none of the targets maps to a vocabulary token")
        sequences = self.tokenizer.encode(texts, require_mask=True)
        mask_id = self.tokenizer.mask_id
        assert mask_id is not None
        self.check_candidates(sequences, mask_id, top_k if target_ids is None else min(top_k, len(target_ids)))
        tokenization_s = time.perf_counter() - started
        outputs, timings = await self._infer(sequences, tokenization_s, started)
        self.metrics.inputs.labels("fill-mask").inc(len(outputs))
        pad_id = self.manifest.special_tokens.pad.id
        answers = []
        for ids, output in zip(sequences, outputs, strict=True):
            assert output.mask_logits is not None
            answers.append(
                tasks.fill_mask(ids, output.mask_logits, mask_id, pad_id, top_k, target_ids, self.tokenizer.decode)
            )
        return answers, timings

    def check_candidates(self, sequences: Sequence[np.ndarray], mask_id: int, top_k: int) -> None:
        """Bound a fill-mask answer: each candidate decodes a whole sequence on the event loop, so many
        masks times a large top_k would stall every other request. The bound admits the largest request
        of single-mask inputs (max_inputs_per_request of them at max_top_k)."""
        masks = sum(int((ids == mask_id).sum()) for ids in sequences)
        limit = self.settings.max_inputs_per_request * self.settings.max_top_k
        if masks * top_k > limit:
            raise InvalidInput(
                f"{masks} mask tokens x top_k {top_k} is {masks * top_k} candidates; this server returns at most "
                f"{limit} per request (use fewer masks or a smaller top_k)"
            )

    def check_dimensions(self, dimensions: int | None) -> None:
        """Shortened embeddings keep 1 to hidden_size dimensions (TEI's /embed and OpenAI's `dimensions`)."""
        hidden = self.manifest.arch.hidden_size
        if dimensions is not None and not 1 <= dimensions <= hidden:
            raise InvalidInput(f"dimensions must be between 1 and {hidden}, got {dimensions}")
