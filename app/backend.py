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
    LOGITS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    TOKEN_TYPE_IDS,
    Manifest,
    ManifestError,
    verify_variant,
)

from app import providers as prov
from app.model_config import ModelOptions

log = logging.getLogger("distilserve.backend")

_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


@dataclass(frozen=True)
class ItemOutput:
    embedding: np.ndarray | None  # [hidden] float32, pooled, not normalized; None for a classifier graph
    mask_logits: np.ndarray | None  # [masks in this item, vocab] float32; None for an embed-only graph
    logits: np.ndarray | None = None  # classifiers: [num_labels], or [tokens, num_labels] per token


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
    type_ids: np.ndarray | None = None  # [tokens] int64 segment ids (1 for a pair's second text); None: all 0


@dataclass(frozen=True)
class TokenBatch:
    """A batch as backends receive it: every item's ids end to end, without padding.

    Item i is `ids[offsets[i]:offsets[i + 1]]`. A backend that pads (`is_padded`) builds its padded
    tensors from this itself; a padding-free one (packed attention) can feed it as it is.
    """

    ids: np.ndarray  # [total tokens] int64
    offsets: np.ndarray  # [items + 1] int64
    wants: tuple[Wants, ...]
    type_ids: np.ndarray | None = None  # [total tokens] int64, when an item is a pair; None: all 0

    @classmethod
    def of(cls, items: Sequence[TokenItem]) -> TokenBatch:
        lengths = np.fromiter((len(item.ids) for item in items), dtype=np.int64, count=len(items))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate([item.ids for item in items]).astype(np.int64, copy=False)
        type_ids = None
        if any(item.type_ids is not None for item in items):
            type_ids = np.concatenate(
                [item.type_ids if item.type_ids is not None else np.zeros_like(item.ids) for item in items]
            ).astype(np.int64, copy=False)
        return cls(ids, offsets, tuple(item.wants for item in items), type_ids)

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
    token_type_ids: np.ndarray  # [batch, longest] int64, 0 but for a pair's second text

    def feeds(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The graph's inputs by name: token_type_ids only where the graph takes it (BERT classifiers)."""
        tensors = {INPUT_IDS: self.input_ids, ATTENTION_MASK: self.attention_mask, TOKEN_TYPE_IDS: self.token_type_ids}
        return {name: tensors[name] for name in names}


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
    real = attention_mask.astype(bool)
    input_ids[real] = batch.ids
    token_type_ids = np.zeros_like(input_ids)
    if batch.type_ids is not None:
        token_type_ids[real] = batch.type_ids
    return PaddedBatch(input_ids, attention_mask, token_type_ids)


def split_outputs(
    embeddings: np.ndarray | None,
    mask_logits: np.ndarray | None,
    mask_positions: np.ndarray | None,
    logits: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
) -> list[ItemOutput]:
    """One ItemOutput per row; mask rows are grouped by batch index (row-major, so already sorted).
    Per-token classifier logits ([batch, seq, labels]) are cut to each item's `lengths`, dropping padding."""
    count = len(embeddings) if embeddings is not None else len(logits) if logits is not None else 0
    rows_of: list[np.ndarray | None] = [None] * count
    if mask_logits is not None and mask_positions is not None:
        rows = mask_positions[:, 0] if len(mask_positions) else np.zeros(0, dtype=np.int64)
        bounds = np.searchsorted(rows, np.arange(count + 1))
        rows_of = [mask_logits[bounds[index] : bounds[index + 1]] for index in range(count)]
    logits_of: list[np.ndarray | None] = [None] * count
    if logits is not None:
        per_token = logits.ndim == 3 and lengths is not None
        logits_of = [logits[index, : int(lengths[index])] if per_token else logits[index] for index in range(count)]
    return [
        ItemOutput(embeddings[index] if embeddings is not None else None, rows_of[index], logits_of[index])
        for index in range(count)
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
        self._input_names = [node.name for node in session.get_inputs()]
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
            feeds = padded.feeds(self._input_names)
            outputs = dict(zip(self._output_names, self._session.run(self._output_names, feeds), strict=True))
        return split_outputs(
            outputs.get(SENTENCE_EMBEDDING), outputs.get(MASK_LOGITS), outputs.get(MASK_POSITIONS),
            outputs.get(LOGITS), batch.lengths,
        )

    def _run_bound(self, batch: PaddedBatch, device: str) -> dict[str, np.ndarray]:
        """IO binding: inputs copied to the device once, outputs allocated there by onnxruntime
        (mask_logits has a data-dependent shape) and copied back in one step."""
        binding = self._session.io_binding()
        for name, tensor in batch.feeds(self._input_names).items():
            binding.bind_cpu_input(name, tensor)
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
    expected = sorted([INPUT_IDS, ATTENTION_MASK])
    if inputs not in (expected, sorted([*expected, TOKEN_TYPE_IDS])):
        raise ManifestError(f"the graph's inputs are {inputs}, expected {expected} (and {TOKEN_TYPE_IDS} for BERT)")
    outputs = [node.name for node in session.get_outputs()]
    mask_outputs = [name for name in (MASK_LOGITS, MASK_POSITIONS) if name in outputs]
    fill_mask = "fill-mask" in manifest.tasks
    if manifest.classifier is None and SENTENCE_EMBEDDING not in outputs:
        raise ManifestError(f"the graph has no {SENTENCE_EMBEDDING} output (outputs: {outputs})")
    if manifest.classifier is not None and LOGITS not in outputs:
        raise ManifestError(f"the manifest describes a classifier, but the graph has no {LOGITS} output (outputs: {outputs})")
    if fill_mask and len(mask_outputs) < 2:
        raise ManifestError(f"the manifest's tasks list fill-mask, but the graph has no {MASK_LOGITS}, {MASK_POSITIONS} outputs")
    if not fill_mask and mask_outputs:
        raise ManifestError("the graph has mask outputs, but the manifest's tasks do not list fill-mask")
    special = manifest.special_tokens
    mask_id = special.mask.id if fill_mask and special.mask is not None else None
    probe = warmup_batch(1, 3, special.cls.id, special.sep.id, mask_id)
    found = _probe(session, inputs, outputs, probe, "a 3-token input")
    if SENTENCE_EMBEDDING in found:
        width = found[SENTENCE_EMBEDDING].shape
        if width != (1, manifest.arch.hidden_size):
            raise ManifestError(
                f"{SENTENCE_EMBEDDING} is {width[-1]} wide, the manifest's arch.hidden_size is {manifest.arch.hidden_size}"
            )
    if manifest.classifier is not None:
        _check_logits(found[LOGITS].shape, manifest)
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
    _probe(session, inputs, outputs, longest, f"an input of max_length {max_length} tokens")


def _check_logits(shape: tuple[int, ...], manifest: Manifest) -> None:
    """A classifier's logits for the 3-token probe: one row of num_labels, or one per token."""
    assert manifest.classifier is not None
    labels = manifest.classifier.num_labels
    per_token = "token-classification" in manifest.tasks
    expected = (1, 3, labels) if per_token else (1, labels)
    if tuple(shape) != expected:
        what = "one row per token" if per_token else "one row per input"
        raise ManifestError(
            f"{LOGITS} has shape {list(shape)} for a 3-token input, expected {list(expected)} "
            f"({what} of the manifest's {labels} labels)"
        )


def _probe(session: Any, inputs: list[str], outputs: list[str], batch: TokenBatch, what: str) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    padded = pad(batch, 0)  # one item: nothing to pad
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the refusal below is the one line; onnxruntime would log the failure too
    try:
        found = session.run(outputs, padded.feeds(inputs), quiet)
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
        # Fell back (CUDA or TensorRT failed to start): reload the variant the provider it fell to prefers.
        fallback = prov.choose_variant(manifest, active[0], None)
        if fallback != variant:
            log.warning("reloading variant %s instead of %s for %s", fallback, variant, active[0])
            variant = fallback
            fallen_to = prov.providers_from(planned, active[0])
            session = _create_session(model_dir, manifest, variant, fallen_to, options, limits, trt_cache_dir)
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
                cuda_graph=options.cuda_graph,
            ),
        )
        for name in planned
    ]
    path = verify_variant(model_dir, manifest, variant)  # the trust gate, for exactly the file that is loaded
    file = manifest.variant(variant).file
    log.info("loading %s (%s) with providers %s", file, variant, [name for name, _ in providers])
    try:
        return ort.InferenceSession(str(path), sess_options=session_options, providers=providers)
    except Exception as error:
        # A file whose checksum the manifest vouches for, yet no model: a bad export or a bad edit.
        # onnxruntime raises a dozen unrelated classes for it (and UnicodeDecodeError for some bytes).
        log.debug("onnxruntime failed to load %s", path, exc_info=True)
        raise ManifestError(f"onnxruntime cannot load {file}: {_ort_message(error)}") from None


def open_backend(
    model_dir: Path, manifest: Manifest, options: ModelOptions, limits: prov.ShapeLimits, trt_cache_dir: Path
) -> OnnxBackend:
    """The backend class the model's variant and settings call for: packed (padding-free) for fp16-packed,
    CUDA graphs per bucket when `cuda_graph` is on, else the padding one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    planned = prov.plan_providers(options.providers or prov.default_providers(available), available, options.strict_providers)
    variant = prov.choose_variant(manifest, planned[0], options.variant)
    prov.check_variant_provider(variant, planned[0])  # before loading a graph the provider cannot run
    if variant in prov.SINGLE_PROVIDER_VARIANTS:
        return PackedOnnxBackend(model_dir, manifest, options, limits, trt_cache_dir)
    if options.cuda_graph:
        return CudaGraphBackend(model_dir, manifest, options, limits, trt_cache_dir)
    return OnnxBackend(model_dir, manifest, options, limits, trt_cache_dir)


class PackedOnnxBackend(OnnxBackend):
    """The packed fp16 graph (model_export/gpu_variants.py) on CUDA: padding-free from the embeddings on.

    It is fed right-padded input_ids and attention_mask, as every graph is: the graph's RemovePadding reads
    each row's token count from the mask (right padding is what it assumes) and gathers the real tokens, so
    the layers compute real tokens only. The batcher therefore budgets the sum of the lengths
    (`is_padded` False); only the embedding lookup and the pooling see the padded shape.
    """

    is_padded = False

    def __init__(
        self, model_dir: Path, manifest: Manifest, options: ModelOptions, limits: prov.ShapeLimits, trt_cache_dir: Path
    ) -> None:
        super().__init__(model_dir, manifest, options, limits, trt_cache_dir)
        prov.check_variant_provider(self.info.variant, self.info.providers[0])


def bucket_sizes(largest: int, smallest: int = 1) -> tuple[int, ...]:
    """Powers of two from `smallest` below `largest`, then `largest` itself."""
    sizes = []
    size = max(1, smallest)
    while size < largest:
        sizes.append(size)
        size *= 2
    return (*sizes, largest)


@dataclass(frozen=True)
class Buckets:
    """The (batch, length) shapes a CUDA graph is captured for: every batch is padded up to one of them."""

    batches: tuple[int, ...]
    lengths: tuple[int, ...]

    @classmethod
    def for_limits(cls, limits: prov.ShapeLimits) -> Buckets:
        return cls(bucket_sizes(limits.max_batch_size), bucket_sizes(limits.max_length, min(16, limits.max_length)))

    def shape(self, rows: int, longest: int) -> tuple[int, int]:
        """The smallest bucket that holds `rows` inputs of at most `longest` tokens."""
        return next(size for size in self.batches if size >= rows), next(size for size in self.lengths if size >= longest)

    def graph_id(self, shape: tuple[int, int]) -> int:
        """onnxruntime's gpu_graph_id for the bucket; from 1, since unannotated runs count as graph 0."""
        return 1 + self.batches.index(shape[0]) * len(self.lengths) + self.lengths.index(shape[1])


def pad_to_bucket(batch: TokenBatch, pad_id: int, shape: tuple[int, int]) -> PaddedBatch:
    """Right padding to the bucket's length, and filler rows up to its batch size. A filler row holds one
    unmasked pad token: a row with no token at all would make attention a softmax over nothing."""
    rows, length = shape
    padded = pad(batch, pad_id)
    input_ids = np.full((rows, length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((rows, length), dtype=np.int64)
    width = padded.input_ids.shape[1]
    input_ids[: len(batch), :width] = padded.input_ids
    attention_mask[: len(batch), :width] = padded.attention_mask
    attention_mask[len(batch) :, 0] = 1
    token_type_ids = np.zeros_like(input_ids)
    token_type_ids[: len(batch), :width] = padded.token_type_ids
    return PaddedBatch(input_ids, attention_mask, token_type_ids)


class BucketBuffers:
    """One bucket's IO buffers, allocated on the device once and bound once: a captured CUDA graph replays
    with the addresses it was captured with, so every run copies its inputs into these same buffers."""

    def __init__(self, session: Any, shape: tuple[int, int], hidden: int, graph_id: int, device: str, device_id: int) -> None:
        import onnxruntime as ort

        def allocate(shape: list[int], dtype: type) -> Any:
            return ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, device_id)

        self.session = session
        self.input_ids = allocate(list(shape), np.int64)
        self.attention_mask = allocate(list(shape), np.int64)
        self.embedding = allocate([shape[0], hidden], np.float32)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(INPUT_IDS, self.input_ids)
        self.binding.bind_ortvalue_input(ATTENTION_MASK, self.attention_mask)
        self.binding.bind_ortvalue_output(SENTENCE_EMBEDDING, self.embedding)
        self.capture = ort.RunOptions()
        self.capture.add_run_config_entry("gpu_graph_id", str(graph_id))
        self.uncaptured = ort.RunOptions()
        self.uncaptured.add_run_config_entry("gpu_graph_id", "-1")
        self.runs = 0

    def run(self, batch: PaddedBatch) -> np.ndarray:
        """The bucket's embeddings. The first run is not captured: it allocates what this shape needs
        (no allocation may happen during a capture); the second captures; the rest replay."""
        self.input_ids.update_inplace(batch.input_ids)
        self.attention_mask.update_inplace(batch.attention_mask)
        self.session.run_with_iobinding(self.binding, self.capture if self.runs else self.uncaptured)
        self.runs += 1
        return self.embedding.numpy()


class CudaGraphBackend(OnnxBackend):
    """The padding backend with one CUDA graph per (batch, length) bucket (the `cuda_graph` setting).

    Each batch is padded up to its bucket's shape and run through that bucket's bound buffers. An
    embedding-only graph: fill-mask's outputs change shape with the number of masks, which a captured
    graph cannot.
    """

    def __init__(
        self, model_dir: Path, manifest: Manifest, options: ModelOptions, limits: prov.ShapeLimits, trt_cache_dir: Path
    ) -> None:
        if manifest.tasks != ["embed"]:
            raise prov.ProviderError(
                "cuda_graph serves embedding-only models: fill-mask outputs change shape with the number of masks, "
                "and the bound buffers hold embeddings only"
            )
        super().__init__(model_dir, manifest, options, limits, trt_cache_dir)
        if not self._io_binding:
            raise prov.ProviderError(f"cuda_graph needs the CUDA provider with io_binding; the session runs on {self.info.providers}")
        self._buckets = Buckets.for_limits(limits)
        self._hidden = manifest.arch.hidden_size
        self._buffers: dict[tuple[int, int], BucketBuffers] = {}

    def run(self, batch: TokenBatch) -> list[ItemOutput]:
        shape = self._buckets.shape(len(batch), int(batch.lengths.max()))
        buffers = self._buffers.get(shape)
        if buffers is None:
            graph_id = self._buckets.graph_id(shape)
            buffers = self._buffers[shape] = BucketBuffers(self._session, shape, self._hidden, graph_id, "cuda", self._device_id)
        embeddings = buffers.run(pad_to_bucket(batch, self._pad_id, shape))
        return split_outputs(embeddings[: len(batch)], None, None)
