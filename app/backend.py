"""The Backend contract, the onnxruntime backend (one warm session) and a deterministic fake for tests.

A backend knows token ids and arrays, never HTTP. `prepare` collates on the event loop while the
previous batch runs; `run` happens on the batcher's single worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from model_export.manifest import (
    ATTENTION_MASK,
    INPUT_IDS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    Manifest,
)

from app import providers as prov
from app.settings import Settings

log = logging.getLogger("distilserve.backend")


@dataclass(frozen=True)
class ItemOutput:
    embedding: np.ndarray  # [hidden] float32, pooled, not normalized
    mask_logits: np.ndarray | None  # [masks in this item, vocab] float32; None for an embed-only graph


@dataclass(frozen=True)
class PaddedBatch:
    input_ids: np.ndarray  # [batch, longest] int64
    attention_mask: np.ndarray  # [batch, longest] int64


@dataclass(frozen=True)
class BackendInfo:
    variant: str
    dtype: str
    providers: list[str]  # active, from the session
    requested_providers: list[str]
    io_binding: bool


class Backend(Protocol):
    info: BackendInfo

    def prepare(self, sequences: Sequence[np.ndarray]) -> PaddedBatch: ...

    def run(self, batch: PaddedBatch) -> list[ItemOutput]: ...

    def warm_up(self, shapes: Sequence[tuple[int, int]], mask_id: int | None) -> None: ...


def pad(sequences: Sequence[np.ndarray], pad_id: int) -> PaddedBatch:
    """Right padding: the fused BERT attention assumes it."""
    longest = max(len(sequence) for sequence in sequences)
    input_ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = sequence
        attention_mask[row, : len(sequence)] = 1
    return PaddedBatch(input_ids, attention_mask)


def split_outputs(
    embeddings: np.ndarray, mask_logits: np.ndarray | None, mask_positions: np.ndarray | None
) -> list[ItemOutput]:
    """One ItemOutput per row; mask rows are grouped by batch index (row-major, so already sorted)."""
    if mask_logits is None or mask_positions is None:
        return [ItemOutput(embedding, None) for embedding in embeddings]
    rows = mask_positions[:, 0] if len(mask_positions) else np.zeros(0, dtype=np.int64)
    bounds = np.searchsorted(rows, np.arange(len(embeddings) + 1))
    return [
        ItemOutput(embeddings[index], mask_logits[bounds[index] : bounds[index + 1]])
        for index in range(len(embeddings))
    ]


def warmup_sequences(batch: int, length: int, cls_id: int, sep_id: int, mask_id: int | None) -> list[np.ndarray]:
    body = np.full(length, 1000, dtype=np.int64)  # an ordinary vocabulary id
    body[0], body[-1] = cls_id, sep_id
    if mask_id is not None and length > 2:
        body[1] = mask_id  # exercise the mask-logits path at full width too
    return [body.copy() for _ in range(batch)]


class OnnxBackend:
    """One onnxruntime session, created and warmed once, run from one thread."""

    def __init__(self, model_dir: Path, manifest: Manifest, settings: Settings, limits: prov.ShapeLimits) -> None:
        import onnxruntime as ort

        self._manifest = manifest
        self._pad_id = manifest.special_tokens.pad.id
        available = ort.get_available_providers()
        planned = prov.plan_providers(settings.providers, available, settings.strict_providers)
        variant = prov.choose_variant(manifest, planned[0], settings.variant)
        session = self._create_session(model_dir, manifest, variant, planned, settings, limits)
        active = session.get_providers()
        log.info("onnxruntime %s; requested %s; active %s", ort.__version__, settings.providers, active)
        prov.check_active(settings.providers, planned, active, settings.strict_providers)
        if settings.variant is None and active[0] != planned[0]:
            # Fell back (e.g. CUDA failed to start): an fp16 graph on CPU would be slow; reload the CPU choice.
            fallback = prov.choose_variant(manifest, active[0], None)
            if fallback != variant:
                log.warning("reloading variant %s instead of %s for %s", fallback, variant, active[0])
                variant = fallback
                session = self._create_session(model_dir, manifest, variant, [prov.CPU], settings, limits)
                active = session.get_providers()
        self._session = session
        self._output_names = [output.name for output in session.get_outputs()]
        self._has_mask_outputs = MASK_LOGITS in self._output_names
        self._io_binding = settings.io_binding and active[0] == prov.CUDA
        self._device_id = settings.device_id
        self.info = BackendInfo(
            variant=variant,
            dtype=manifest.variant(variant).dtype,
            providers=active,
            requested_providers=list(settings.providers),
            io_binding=self._io_binding,
        )

    @staticmethod
    def _create_session(
        model_dir: Path,
        manifest: Manifest,
        variant: str,
        planned: list[str],
        settings: Settings,
        limits: prov.ShapeLimits,
    ):  # type: ignore[no-untyped-def]
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # The exporter already fused the graph; the extended level re-checks fusions cheaply.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if prov.TENSORRT in planned:
            settings.trt_cache_path.mkdir(parents=True, exist_ok=True)
        providers = [
            (
                name,
                prov.provider_options(
                    name,
                    device_id=settings.device_id,
                    limits=limits,
                    trt_fp16=settings.trt_fp16,
                    trt_cache_dir=settings.trt_cache_path,
                    trt_workspace_bytes=settings.trt_workspace_bytes,
                ),
            )
            for name in planned
        ]
        path = model_dir / manifest.variant(variant).file
        log.info("loading %s (%s) with providers %s", path.name, variant, [name for name, _ in providers])
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)

    def prepare(self, sequences: Sequence[np.ndarray]) -> PaddedBatch:
        return pad(sequences, self._pad_id)

    def run(self, batch: PaddedBatch) -> list[ItemOutput]:
        if self._io_binding:
            outputs = self._run_bound(batch, "cuda")
        else:
            feeds = {INPUT_IDS: batch.input_ids, ATTENTION_MASK: batch.attention_mask}
            outputs = dict(zip(self._output_names, self._session.run(self._output_names, feeds), strict=True))
        return split_outputs(outputs[SENTENCE_EMBEDDING], outputs.get(MASK_LOGITS), outputs.get(MASK_POSITIONS))

    def _run_bound(self, batch: PaddedBatch, device: str) -> dict[str, np.ndarray]:
        """IO binding: inputs copied to the device once, outputs allocated there by onnxruntime
        (mask_logits has a data-dependent shape) and copied back in one step."""
        binding = self._session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, batch.input_ids)
        binding.bind_cpu_input(ATTENTION_MASK, batch.attention_mask)
        for name in self._output_names:
            binding.bind_output(name, device, self._device_id if device == "cuda" else 0)
        self._session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu(), strict=True))

    def warm_up(self, shapes: Sequence[tuple[int, int]], mask_id: int | None) -> None:
        special = self._manifest.special_tokens
        for batch, length in shapes:
            started = time.perf_counter()
            sequences = warmup_sequences(batch, length, special.cls.id, special.sep.id, mask_id)
            self.run(self.prepare(sequences))
            log.info("warm-up %dx%d took %.2fs", batch, length, time.perf_counter() - started)


@dataclass
class FakeBackend:
    """Deterministic stand-in: outputs depend only on each item's own ids (never on its batch).

    `delay_s` sleeps per batch; `fail_if(ids_batch)` raising or returning True fails the batch;
    `batches` records each batch's real lengths for the batching tests.
    """

    hidden_size: int = 8
    vocab_size: int = 64
    pad_id: int = 0
    mask_id: int | None = 3
    delay_s: float = 0.0
    fail_if: object = None
    batches: list[list[int]] = field(default_factory=list)
    info: BackendInfo = field(
        default_factory=lambda: BackendInfo("fp32", "float32", ["FakeExecutionProvider"], ["FakeExecutionProvider"], False)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self, sequences: Sequence[np.ndarray]) -> PaddedBatch:
        return pad(sequences, self.pad_id)

    def embedding(self, ids: np.ndarray) -> np.ndarray:
        rows = np.stack([np.cos(np.arange(1, self.hidden_size + 1) * (int(token) % 997 + 1)) for token in ids])
        return rows.mean(axis=0).astype(np.float32)

    def logits(self, ids: np.ndarray, position: int) -> np.ndarray:
        before = int(ids[position - 1]) if position > 0 else 0
        vocab = np.arange(self.vocab_size, dtype=np.float32)
        return (np.sin(vocab * 0.37 + before + position) * 4.0).astype(np.float32)

    def run(self, batch: PaddedBatch) -> list[ItemOutput]:
        lengths = batch.attention_mask.sum(axis=1)
        with self._lock:
            self.batches.append([int(length) for length in lengths])
        if self.delay_s:
            time.sleep(self.delay_s)
        if callable(self.fail_if) and self.fail_if(batch):
            raise RuntimeError("fake backend failure")
        outputs = []
        for row, length in zip(batch.input_ids, lengths, strict=True):
            ids = row[: int(length)]
            logits = None
            if self.mask_id is not None:
                positions = np.flatnonzero(ids == self.mask_id)
                logits = np.stack([self.logits(ids, int(p)) for p in positions]) if len(positions) else (
                    np.zeros((0, self.vocab_size), dtype=np.float32)
                )
            outputs.append(ItemOutput(self.embedding(ids), logits))
        return outputs

    def warm_up(self, shapes: Sequence[tuple[int, int]], mask_id: int | None) -> None:
        for batch, length in shapes:
            self.run(self.prepare(warmup_sequences(batch, length, 1, 2, mask_id)))
        with self._lock:
            self.batches.clear()
