"""One model's runtime: its manifest, tokenizer, backend, batcher, admission, limits and task maths.

Routes reach a runtime through the registry and call `embed`, `embeddings`, `fill_mask`, `tokenize`
or `decode` (classifiers: app/classifier.py, through `classifier_logits`); errors are ServiceErrors
that the handlers render. Every request goes the same way:

    admit (a permit, before any work) -> tokenize (worker pool) -> batcher -> backend (inference
    thread; mask rows reduced to candidates there) -> post-process (worker pool) -> answer + timings
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from model_export.manifest import Manifest

from app import tasks
from app.admission import Admission, Permit, estimate_tokens
from app.backend import Backend, ItemOutput, TokenBatch, TokenItem, Wants, warmup_batch
from app.batcher import Batcher, BatchStats, ItemResult
from app.cost_model import DEFAULT_COST_MODEL, CostModel, calibrate, calibration_shapes
from app.errors import BackendError, InvalidInput, Unhealthy
from app.metrics import ModelMetrics
from app.model_config import ModelOptions
from app.providers import CPU, ShapeLimits
from app.tokenizer import Direction, TextTokenizer, Token, is_blank
from app.workers import WorkerPool

log = logging.getLogger("distilserve.runtime")

# Not a manifest task: what /rerank needs, a text classifier with a single logit (TEI's "reranker").
RERANK = "rerank"

Extra = TypeVar("Extra")


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


@dataclass(frozen=True)
class Answer:
    """What an inference thread hands back for one item: nothing vocabulary-wide survives a batch."""

    embedding: np.ndarray | None
    candidates: tasks.MaskCandidates | None
    logits: np.ndarray | None = None  # classifiers: [num_labels], or [tokens, num_labels]


def _chars(texts: Sequence[str]) -> int:
    return sum(len(text) for text in texts)


class _BatchRunner:
    """The batcher's processor: collate token items, run the backend, keep what each item wants."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def prepare(self, items: Sequence[TokenItem]) -> TokenBatch:
        return TokenBatch.of(items)

    def run(self, batch: TokenBatch) -> list[Answer]:
        outputs = self.backend.run(batch)
        return [_answer(output, wants) for output, wants in zip(outputs, batch.wants, strict=True)]


def _answer(output: ItemOutput, wants: Wants) -> Answer:
    candidates = None
    if wants.mask_top_k is not None and output.mask_logits is not None:
        candidates = tasks.mask_candidates(output.mask_logits, wants.mask_top_k, wants.mask_targets)
    return Answer(output.embedding if wants.embedding else None, candidates, output.logits)


def inference_workers(options: ModelOptions, providers: Sequence[str]) -> int:
    """Batches run at once: as configured, else 2 on CPU (measured: see the option's description) and 1
    on a GPU, where one batch already fills the device and a second would only double its memory."""
    if options.inference_workers is not None:
        return options.inference_workers
    return 2 if not providers or providers[0] == CPU else 1


class ModelRuntime:
    def __init__(
        self,
        manifest: Manifest,
        options: ModelOptions,
        tokenizer: TextTokenizer,
        backend: Backend,
        metrics: ModelMetrics,
        workers: WorkerPool,
        retry_after_s: int,
    ) -> None:
        self.manifest = manifest
        self.model_id = manifest.model_id
        self.options = options
        self.tokenizer = tokenizer
        self.backend = backend
        self.metrics = metrics
        self.workers = workers
        self.limits = ShapeLimits(options.max_batch_size, options.max_batch_tokens, tokenizer.max_length)
        self.inference_workers = inference_workers(options, backend.info.providers)
        self.admission = Admission(
            options.max_queue,
            options.max_queue_ms / 1000 if options.max_queue_ms else None,
            retry_after_s,
            parallelism=self.inference_workers,
        )
        # Computed at each scrape, so it is current without a refresh in the /metrics route.
        metrics.expected_wait.set_function(self.admission.expected_wait_s)
        self.batcher: Batcher[TokenItem, TokenBatch, Answer] = Batcher(
            _BatchRunner(backend),
            max_batch_tokens=options.max_batch_tokens,
            max_batch_size=options.max_batch_size,
            max_wait_s=options.max_wait_ms / 1000,
            max_queue=options.max_queue,
            retry_after_s=retry_after_s,
            on_batch=self._observe_batch,
            padded=backend.is_padded,
            max_batch_rows=options.max_batch_mask_rows if "fill-mask" in manifest.tasks else None,
            # Calibrated at warm-up; a padding-free backend plans by summed tokens and needs none.
            cost_model=DEFAULT_COST_MODEL if backend.is_padded else None,
            workers=self.inference_workers,
        )
        self.warmed = False
        self.warmup_error: str | None = None
        self._warmup_task: asyncio.Task[None] | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest.tasks)

    @property
    def is_reranker(self) -> bool:
        classifier = self.manifest.classifier
        return classifier is not None and classifier.num_labels == 1 and "text-classification" in self.manifest.tasks

    def serves(self, task: str) -> bool:
        return self.is_reranker if task == RERANK else task in self.manifest.tasks

    @property
    def ready(self) -> bool:
        return self.warmed and self.batcher.healthy

    @property
    def alive(self) -> bool:
        return self.warmup_error is None and (self.batcher.healthy or self._warmup_task is None)

    def not_ready_reason(self) -> str | None:
        if self.ready:
            return None
        if self.warmup_error is not None:
            return "warm-up failed"
        return "warming up" if not self.warmed else "the batching loop has stopped"

    async def start(self) -> None:
        self.batcher.start()
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up())

    async def stop(self) -> None:
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        await self.batcher.close()

    async def _warm_up(self) -> None:
        # Runs on an inference thread; requests that arrive meanwhile queue (or take the other workers).
        shapes = self.limits.warmup_shapes() if self.options.warmup else []
        special = self.manifest.special_tokens
        started = time.perf_counter()
        for batch, length in shapes:
            warm = warmup_batch(batch, length, special.cls.id, special.sep.id, self.tokenizer.mask_id)
            shape_started = time.perf_counter()
            try:
                await self.batcher.call_in_worker(lambda warm=warm: self.backend.run(warm))
            except Exception as error:
                self.warmup_error = f"{type(error).__name__}"
                log.exception("%s: warm-up at %dx%d failed; the server will not report ready", self.model_id, batch, length)
                return
            # The first measure of throughput, so admission can bound waits from the first request on.
            self.admission.observe(batch * length, time.perf_counter() - shape_started)
        if self.options.warmup and self.backend.is_padded:
            try:
                self.batcher.cost_model = await self.batcher.call_in_worker(self._calibrate)
            except Exception as error:
                self.warmup_error = f"{type(error).__name__}"
                log.exception("%s: calibrating the batch cost model failed; the server will not report ready", self.model_id)
                return
        self.warmed = True
        log.info("%s ready: warmed up at %s in %.2fs", self.model_id, shapes, time.perf_counter() - started)

    @property
    def cost_model(self) -> CostModel | None:
        """What the planner believes a padded batch costs (None for a padding-free backend)."""
        return self.batcher.cost_model

    def _calibrate(self) -> CostModel:
        """Time a few batch shapes on the backend (on an inference thread) and fit the planner's cost model."""
        special, mask_id = self.manifest.special_tokens, self.tokenizer.mask_id
        shapes = calibration_shapes(self.limits.max_length, self.options.max_batch_size, self.options.max_batch_tokens)
        batches = {shape: warmup_batch(*shape, special.cls.id, special.sep.id, mask_id) for shape in shapes}
        model = calibrate(lambda rows, length: self.backend.run(batches[rows, length]), shapes)
        log.info(
            "%s batch cost model: %.3f ms + %.2f us/token + %.3f ns/token/length (fit error %.1f%%)",
            self.model_id, model.overhead_s * 1e3, model.per_token_s * 1e6, model.per_token_length_s * 1e9,
            (model.fit_error or 0) * 100,
        )
        return model

    def _observe_batch(self, stats: BatchStats) -> None:
        self.metrics.observe_batch(stats)
        if not stats.failed:
            self.admission.observe(stats.real_tokens, stats.inference_s)

    def check_count(self, count: int) -> None:
        if count > self.options.max_inputs_per_request:
            raise InvalidInput(
                f"{count} inputs in one request; this server accepts at most {self.options.max_inputs_per_request}"
            )

    def check_dimensions(self, dimensions: int | None) -> None:
        """Shortened embeddings keep 1 to hidden_size dimensions (TEI's /embed and OpenAI's `dimensions`)."""
        hidden = self.manifest.arch.hidden_size
        if dimensions is not None and not 1 <= dimensions <= hidden:
            raise InvalidInput(f"dimensions must be between 1 and {hidden}, got {dimensions}")

    def admit(self, count: int, estimated_tokens: int) -> Permit:
        """Validate the request's size and take its permit, before any tokenization."""
        self.check_count(count)
        if self.warmup_error is not None:
            raise Unhealthy("the model failed to warm up; see the server log")
        permit = self.admission.admit(count, estimated_tokens)
        self.metrics.admitted_tokens.set(self.admission.tokens)
        return permit

    async def _infer(
        self, permit: Permit, items: list[TokenItem], rows: list[int], tokenization_s: float, started: float
    ) -> tuple[list[Answer], Timings]:
        permit.resize(sum(len(item.ids) for item in items))
        futures = self.batcher.submit(items, [len(item.ids) for item in items], rows)
        self.metrics.queue_depth.set(self.batcher.queue_depth)
        try:
            results: list[ItemResult[Answer]] = await asyncio.gather(*futures)
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
        vectors = await self.workers.run_sized(
            result.vectors.size, lambda: [tasks.embedding(vector, normalize, dimensions) for vector in result.vectors]
        )
        return vectors, result.timings

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
        max_length = self.tokenizer.max_length
        encode: Callable[[], list[np.ndarray]]
        if texts is not None:
            count, estimate = len(texts), estimate_tokens(texts, max_length)
            encode = functools.partial(self.tokenizer.encode, texts, truncate=truncate, direction=direction)
        else:
            ids = ids or []
            count, estimate = len(ids), sum(min(max_length, len(row) + 2) for row in ids)
            encode = functools.partial(self.tokenizer.encode_ids, ids, truncate=truncate, direction=direction)
        with self.admit(count, estimate) as permit:
            sequences = await self.workers.run_sized(_chars(texts) if texts is not None else estimate, encode)
            items = [TokenItem(sequence, Wants(embedding=True)) for sequence in sequences]
            answers, timings = await self._infer(
                permit, items, self._mask_rows(sequences), time.perf_counter() - started, started
            )
        self.metrics.inputs["embed"].inc(len(answers))
        vectors = np.stack([answer.embedding for answer in answers]).astype(np.float32, copy=False)
        return EmbeddingResult(vectors, [len(sequence) for sequence in sequences], timings)

    async def classifier_logits(
        self, count: int, estimate: int, chars: int, encode: Callable[[], tuple[list[TokenItem], Extra]], task: str
    ) -> tuple[list[np.ndarray], Extra, Timings]:
        """Logits per input for a classifier: admit, `encode` on the workers (it returns the token items and
        whatever the post-processing needs from the tokenizer), then the batcher."""
        started = time.perf_counter()
        with self.admit(count, estimate) as permit:
            items, extra = await self.workers.run_sized(chars, encode)
            answers, timings = await self._infer(permit, items, [0] * len(items), time.perf_counter() - started, started)
        if any(answer.logits is None for answer in answers):
            raise BackendError("inference failed")  # a graph without logits; check_graph prevents it
        self.metrics.inputs[task].inc(len(answers))
        return [answer.logits for answer in answers if answer.logits is not None], extra, timings

    async def fill_mask(
        self, texts: Sequence[str], *, top_k: int = 5, targets: Sequence[str] | None = None
    ) -> tuple[list[Any], Timings]:
        """One pipeline-shaped answer per text."""
        started = time.perf_counter()
        if not 0 <= top_k <= self.options.max_top_k:  # 0 answers empty lists, as the pipeline does
            raise InvalidInput(f"top_k must be between 0 and {self.options.max_top_k}, got {top_k}")
        mask_id = self.tokenizer.mask_id
        assert mask_id is not None  # the registry only routes fill-mask to models that have a mask token
        with self.admit(len(texts), estimate_tokens(texts, self.tokenizer.max_length)) as permit:
            sequences, target_ids = await self.workers.run_sized(_chars(texts), self._encode_fill_mask, texts, targets)
            rows = self._mask_rows(sequences)
            self._check_candidates(rows, top_k if target_ids is None else min(top_k, len(target_ids)))
            wants = Wants(embedding=False, mask_top_k=top_k, mask_targets=target_ids)
            items = [TokenItem(sequence, wants) for sequence in sequences]
            answers, timings = await self._infer(permit, items, rows, time.perf_counter() - started, started)
            candidates = sum(rows) * top_k
            results = await self.workers.run_sized(candidates, self._fill_mask_answers, sequences, answers, mask_id)
        self.metrics.inputs["fill-mask"].inc(len(answers))
        return results, timings

    def _fill_mask_answers(self, sequences: Sequence[np.ndarray], answers: Sequence[Answer], mask_id: int) -> list[Any]:
        pad_id = self.manifest.special_tokens.pad.id
        results = []
        for ids, answer in zip(sequences, answers, strict=True):
            if answer.candidates is None:
                raise BackendError("inference failed")  # a graph without mask outputs; the registry prevents it
            results.append(tasks.fill_mask(ids, answer.candidates, mask_id, pad_id, self.tokenizer.decode))
        return results

    def _encode_fill_mask(
        self, texts: Sequence[str], targets: Sequence[str] | None
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        target_ids = None
        if targets is not None:
            if not targets:  # the pipeline refuses this too ("At least one target must be provided")
                raise InvalidInput("targets: name at least one target, or leave targets out")
            for index, target in enumerate(targets):
                if is_blank(target):
                    raise InvalidInput(f"targets: target {index} is empty or only whitespace")
            target_ids = tasks.target_ids(targets, self.tokenizer.token_to_id, self.tokenizer.first_piece)
            if target_ids is None:
                raise InvalidInput("targets: none of the targets maps to a vocabulary token")
        return self.tokenizer.encode(texts, require_mask=True), target_ids

    def _mask_rows(self, sequences: Sequence[np.ndarray]) -> list[int]:
        """Mask-logit rows each input costs (the graph emits one per mask token, whatever the task)."""
        mask_id = self.tokenizer.mask_id
        if mask_id is None or "fill-mask" not in self.manifest.tasks:
            return [0] * len(sequences)
        rows = [int((ids == mask_id).sum()) for ids in sequences]
        limit = self.options.max_batch_mask_rows
        for index, count in enumerate(rows):
            if count > limit:
                raise InvalidInput(
                    f"input {index} has {count} mask tokens; this model takes at most {limit} per input "
                    "(max_batch_mask_rows); use fewer masks"
                )
        return rows

    def _check_candidates(self, rows: Sequence[int], top_k: int) -> None:
        """Bound a fill-mask answer: each candidate decodes a whole sequence, so many masks times a
        large top_k would take the workers for seconds. The bound admits the largest request of
        single-mask inputs (max_inputs_per_request of them at max_top_k)."""
        masks = sum(rows)
        limit = self.options.max_inputs_per_request * self.options.max_top_k
        if masks * top_k > limit:
            raise InvalidInput(
                f"{masks} mask tokens x top_k {top_k} is {masks * top_k} candidates; this server returns at most "
                f"{limit} per request (use fewer masks or a smaller top_k)"
            )

    async def tokenize(self, texts: Sequence[str], add_special_tokens: bool) -> list[list[Token]]:
        """TEI's /tokenize: the same input count and length limits as inference."""
        with self.admit(len(texts), 0):
            return await self.workers.run_sized(_chars(texts), self.tokenizer.tokenize_all, texts, add_special_tokens)

    async def decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool) -> list[str]:
        with self.admit(len(sequences), 0):
            size = sum(map(len, sequences))
            return await self.workers.run_sized(size, self.tokenizer.decode_all, sequences, skip_special_tokens)
