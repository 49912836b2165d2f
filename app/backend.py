"""The Backend contract and the onnxruntime backend (one warm session per model).

A backend knows token ids and arrays, never HTTP. It receives a TokenBatch (flat ids plus offsets,
and what each item wants back) on one of the batcher's inference threads (`inference_workers` of
them may call `run` at once) and returns one ItemOutput per item. Padding, where the engine needs
it, happens inside the backend.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model_export.manifest import (
    ATTENTION_MASK,
    INPUT_IDS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    Manifest,
    ManifestError,
    model_file,
    verify_model_dir,
)

from app import providers as prov
from app.model_config import ModelOptions

log = logging.getLogger("distilserve.backend")

_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


@dataclass(frozen=True)
class ItemOutput:
    embedding: np.ndarray  # [hidden] float32, pooled, not normalized
    mask_logits: np.ndarray | None  # [masks in this item, vocab] float32; None for an embed-only graph


@dataclass(frozen=True, eq=False)
class Wants:
    """What one item needs back: its pooled embedding, and/or the best `mask_top_k` fill-mask
    candidates at its mask positions (among `mask_targets` when given). A backend may skip work
    nobody wants, or reduce mask logits to candidates itself."""

    embedding: bool = True
    mask_top_k: int | None = None  # None: no fill-mask candidates (0: an empty list per mask)
    mask_targets: np.ndarray | None = None

    @property
    def mask_logits(self) -> bool:
        return self.mask_top_k is not None


@dataclass(frozen=True)
class TokenItem:
    """One input as the batcher queues it: its ids (special tokens included) and what it wants back."""

    ids: np.ndarray  # [tokens] int64
    wants: Wants


@dataclass(frozen=True)
class TokenBatch:
    """A batch as backends receive it: every item's ids end to end, without padding.

    Item i is `ids[offsets[i]:offsets[i + 1]]`. A backend that pads (`is_padded`) builds its padded
    tensors from this itself; a padding-free one (packed attention) can feed it as it is.
    """

    ids: np.ndarray  # [total tokens] int64
    offsets: np.ndarray  # [items + 1] int64
    wants: tuple[Wants, ...]

    @classmethod
    def of(cls, items: Sequence[TokenItem]) -> TokenBatch:
        lengths = np.fromiter((len(item.ids) for item in items), dtype=np.int64, count=len(items))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate([item.ids for item in items]).astype(np.int64, copy=False)
        return cls(ids, offsets, tuple(item.wants for item in items))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def item_ids(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]


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
    """One model's inference engine: a warm session, run from the batcher's inference threads.

    `is_padded` tells the batcher how a batch costs: longest x count for a backend that pads,
    the sum of the lengths for one that does not.
    """

    info: BackendInfo
    is_padded: bool

    def run(self, batch: TokenBatch) -> list[ItemOutput]: ...


def pad(batch: TokenBatch, pad_id: int) -> PaddedBatch:
    """Right padding: the fused BERT attention assumes it."""
    lengths = batch.lengths
    longest = int(lengths.max())
    input_ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
    attention_mask = (np.arange(longest) < lengths[:, None]).astype(np.int64)
    input_ids[attention_mask.astype(bool)] = batch.ids
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


def warmup_batch(batch: int, length: int, cls_id: int, sep_id: int, mask_id: int | None) -> TokenBatch:
    body = np.full(length, 1000, dtype=np.int64)  # an ordinary vocabulary id
    body[0], body[-1] = cls_id, sep_id
    if mask_id is not None and length > 2:
        body[1] = mask_id  # exercise the mask-logits path at full width too
    wants = Wants(embedding=True, mask_top_k=5 if mask_id is not None else None)
    return TokenBatch.of([TokenItem(body, wants) for _ in range(batch)])


class OnnxBackend:
    """One onnxruntime session, created once, run from the batcher's inference threads (onnxruntime's
    `run` is thread-safe; concurrent runs share the intra-op threads). It pads: the fused attention
    of the exported graph takes [batch, longest] tensors with an attention mask."""

    is_padded = True

    def __init__(
        self, model_dir: Path, manifest: Manifest, options: ModelOptions, limits: prov.ShapeLimits, trt_cache_dir: Path
    ) -> None:
        self._pad_id = manifest.special_tokens.pad.id
        session, variant, requested = _open_session(model_dir, manifest, options, limits, trt_cache_dir)
        check_graph(session, manifest, limits.max_length)
        active = session.get_providers()
        self._session = session
        self._output_names = [output.name for output in session.get_outputs()]
        self._io_binding = options.io_binding and active[0] == prov.CUDA
        self._device_id = options.device_id
        self.info = BackendInfo(
            variant=variant,
            dtype=manifest.variant(variant).dtype,
            providers=active,
            requested_providers=requested,
            io_binding=self._io_binding,
        )

    def run(self, batch: TokenBatch) -> list[ItemOutput]:
        padded = pad(batch, self._pad_id)
        if self._io_binding:
            outputs = self._run_bound(padded, "cuda")
        else:
            feeds = {INPUT_IDS: padded.input_ids, ATTENTION_MASK: padded.attention_mask}
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


def check_graph(session: Any, manifest: Manifest, max_length: int) -> None:
    """Refuse a graph that its manifest does not describe, naming the first disagreement.

    The names come from the session; widths, the mask id and the longest input from two probe runs
    (a 3-token input, then one of `max_length` tokens), so symbolic dimensions are checked too.
    """
    inputs = sorted(node.name for node in session.get_inputs())
    if inputs != sorted([INPUT_IDS, ATTENTION_MASK]):
        raise ManifestError(f"the graph's inputs are {inputs}, expected {sorted([INPUT_IDS, ATTENTION_MASK])}")
    outputs = [node.name for node in session.get_outputs()]
    mask_outputs = [name for name in (MASK_LOGITS, MASK_POSITIONS) if name in outputs]
    fill_mask = "fill-mask" in manifest.tasks
    if SENTENCE_EMBEDDING not in outputs:
        raise ManifestError(f"the graph has no {SENTENCE_EMBEDDING} output (outputs: {outputs})")
    if fill_mask and len(mask_outputs) < 2:
        raise ManifestError(f"the manifest's tasks list fill-mask, but the graph has no {MASK_LOGITS}, {MASK_POSITIONS} outputs")
    if not fill_mask and mask_outputs:
        raise ManifestError("the graph has mask outputs, but the manifest's tasks do not list fill-mask")
    special = manifest.special_tokens
    mask_id = special.mask.id if fill_mask and special.mask is not None else None
    probe = warmup_batch(1, 3, special.cls.id, special.sep.id, mask_id)
    found = _probe(session, outputs, probe, "a 3-token input")
    width = found[SENTENCE_EMBEDDING].shape
    if width != (1, manifest.arch.hidden_size):
        raise ManifestError(
            f"{SENTENCE_EMBEDDING} is {width[-1]} wide, the manifest's arch.hidden_size is {manifest.arch.hidden_size}"
        )
    if mask_id is not None:
        logits, positions = found[MASK_LOGITS], found[MASK_POSITIONS]
        if logits.shape[-1] != manifest.arch.vocab_size:
            raise ManifestError(
                f"{MASK_LOGITS} has {logits.shape[-1]} columns, the manifest's arch.vocab_size is {manifest.arch.vocab_size}"
            )
        if positions.tolist() != [[0, 1]]:
            raise ManifestError(
                f"the graph returns no {MASK_LOGITS} row for the manifest's mask token id {mask_id} "
                f"(special_tokens.mask); it marks {len(positions)} position(s) in [CLS] [MASK] [SEP]"
            )
    longest = warmup_batch(1, max_length, special.cls.id, special.sep.id, mask_id)
    _probe(session, outputs, longest, f"an input of max_length {max_length} tokens")


def _probe(session: Any, outputs: list[str], batch: TokenBatch, what: str) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    padded = pad(batch, 0)  # one item: nothing to pad
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the refusal below is the one line; onnxruntime would log the failure too
    try:
        found = session.run(outputs, {INPUT_IDS: padded.input_ids, ATTENTION_MASK: padded.attention_mask}, quiet)
    except Exception as error:  # onnxruntime's errors share no base class but Exception
        raise ManifestError(f"the graph cannot run {what}: {_ort_message(error)}") from None
    return dict(zip(outputs, found, strict=True))


def _ort_message(error: BaseException) -> str:
    """onnxruntime's message on one line, without its '[ONNXRuntimeError] : 7 : KIND :' prefix."""
    lines = str(error).strip().splitlines()
    return _ORT_PREFIX.sub("", lines[0]) if lines else type(error).__name__


def _open_session(
    model_dir: Path, manifest: Manifest, options: ModelOptions, limits: prov.ShapeLimits, trt_cache_dir: Path
) -> tuple[Any, str, list[str]]:
    """The session on the best provider that starts, the variant it loaded, and the providers asked for."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    requested = options.providers or prov.default_providers(available)
    planned = prov.plan_providers(requested, available, options.strict_providers)
    variant = prov.choose_variant(manifest, planned[0], options.variant)
    session = _create_session(model_dir, manifest, variant, planned, options, limits, trt_cache_dir)
    active = session.get_providers()
    log.info("onnxruntime %s; requested %s; active %s", ort.__version__, requested, active)
    prov.check_active(requested, planned, active, options.strict_providers)
    if options.variant is None and active[0] != planned[0]:
        # Fell back (e.g. CUDA failed to start): an fp16 graph on CPU would be slow; reload the CPU choice.
        fallback = prov.choose_variant(manifest, active[0], None)
        if fallback != variant:
            log.warning("reloading variant %s instead of %s for %s", fallback, variant, active[0])
            variant = fallback
            session = _create_session(model_dir, manifest, variant, [prov.CPU], options, limits, trt_cache_dir)
    return session, variant, requested


def _create_session(
    model_dir: Path,
    manifest: Manifest,
    variant: str,
    planned: list[str],
    options: ModelOptions,
    limits: prov.ShapeLimits,
    trt_cache_dir: Path,
) -> Any:
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.intra_op_threads
    session_options.inter_op_num_threads = 1
    if not options.intra_op_spinning:
        # Spinning threads keep cores busy between operators and between batches; on a shared or small
        # machine that CPU is taken from tokenization and from the other batch that runs at the same time.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The exporter already fused the graph; the extended level re-checks fusions cheaply.
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if prov.TENSORRT in planned:
        trt_cache_dir.mkdir(parents=True, exist_ok=True)
    providers = [
        (
            name,
            prov.provider_options(
                name,
                device_id=options.device_id,
                limits=limits,
                trt_fp16=options.trt_fp16,
                trt_cache_dir=trt_cache_dir,
                trt_workspace_bytes=options.trt_workspace_bytes,
            ),
        )
        for name in planned
    ]
    verify_model_dir(model_dir, variants=[variant])  # the trust gate, for exactly the file that is loaded
    file = manifest.variant(variant).file
    path = model_file(model_dir, file)
    log.info("loading %s (%s) with providers %s", file, variant, [name for name, _ in providers])
    try:
        return ort.InferenceSession(str(path), sess_options=session_options, providers=providers)
    except Exception as error:
        # A file whose checksum the manifest vouches for, yet no model: a bad export or a bad edit.
        # onnxruntime raises a dozen unrelated classes for it (and UnicodeDecodeError for some bytes).
        log.debug("onnxruntime failed to load %s", path, exc_info=True)
        raise ManifestError(f"onnxruntime cannot load {file}: {_ort_message(error)}") from None
