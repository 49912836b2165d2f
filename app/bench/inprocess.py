"""What the same machine gives in process, with no server: the figures the HTTP rows are judged against.

- `raw_rows`: the server's own OnnxBackend called directly: one input per run (the latency floor at
  concurrency 1), and batches in arrival order (what a planner that ignores length gets).
- `ceiling_row`: a bare onnxruntime session on the served variant's file, the texts sorted by length
  in batches of 32, each padded to its longest: the least padding any planner can reach, hence
  the ceiling every other figure is a ratio to.
- `sentence_transformers_row` and `fill_mask_pipeline_row`: what users would run instead, on the
  checkpoint the model directory was exported from (torch; imported only here).

Every throughput covers whole passes over the texts (at least one, more while time remains), so a
short duration cannot favour the short texts of a sorted order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.bench.rows import Row, latency_row

if TYPE_CHECKING:
    from model_export.manifest import Manifest

    from app.backend import OnnxBackend
    from app.model_config import ModelOptions
    from app.providers import ShapeLimits
    from app.settings import Settings

CEILING_BATCH = 32


def open_backend(model_dir: Path, options: ModelOptions, trt_cache_dir: Path) -> tuple[OnnxBackend, Manifest, ShapeLimits]:
    """The server's backend for one model directory, built as the server builds it, without HTTP."""
    from model_export.manifest import verify_model_dir

    from app.backend import open_backend as backend_for
    from app.providers import ShapeLimits

    manifest = verify_model_dir(model_dir)
    limits = ShapeLimits(options.max_batch_size, options.max_batch_tokens, options.max_input_length or manifest.max_length)
    return backend_for(model_dir, manifest, options, limits, trt_cache_dir), manifest, limits


@dataclass
class Served:
    """One model directory opened as the server would serve it, warm, with the texts tokenized."""

    model_dir: Path
    task: str
    settings: Settings
    manifest: Manifest
    backend: OnnxBackend
    limits: ShapeLimits
    sequences: list[np.ndarray]

    @property
    def threads(self) -> int:
        """The server's intra-op threads; 0 (onnxruntime's choice) counted as every core, for torch."""
        return self.settings.intra_op_threads or os.cpu_count() or 1


def open_served(model_dir: Path, task: str, texts: list[str]) -> Served:
    from app.backend import warmup_batch
    from app.settings import Settings
    from app.tokenizer import TextTokenizer

    settings = Settings(model_dir=[model_dir])
    backend, manifest, limits = open_backend(model_dir, settings, settings.trt_cache_path)
    tokenizer = TextTokenizer(model_dir / manifest.tokenizer_file, manifest.special_tokens, limits.max_length,
                              manifest.clean_up_tokenization_spaces)
    special = manifest.special_tokens
    for batch, length in limits.warmup_shapes():
        backend.run(warmup_batch(batch, length, special.cls.id, special.sep.id, tokenizer.mask_id))
    sequences = tokenizer.encode(texts, truncate=True)
    return Served(model_dir, task, settings, manifest, backend, limits, sequences)


def _timed_passes(duration: float, one_pass: Callable[[], list[float]]) -> tuple[float, list[float], int]:
    """Whole passes until `duration` is spent (at least one): elapsed seconds, run times, passes."""
    run_times: list[float] = []
    passes = 0
    started = time.perf_counter()
    while passes == 0 or time.perf_counter() - started < duration:
        run_times += one_pass()
        passes += 1
    return time.perf_counter() - started, run_times, passes


def raw_rows(served: Served, duration: float) -> list[Row]:
    """The server's backend, no HTTP: one input per run, then arrival-order batches of max_batch_size."""
    from app.backend import TokenBatch, TokenItem, Wants

    wants = Wants(embedding=served.task == "embed", mask_top_k=5 if served.task == "fill-mask" else None)
    sequences = served.sequences

    def run(batch: list[np.ndarray]) -> float:
        started = time.perf_counter()
        served.backend.run(TokenBatch.of([TokenItem(ids, wants) for ids in batch]))
        return time.perf_counter() - started

    latencies: list[float] = []
    deadline = time.perf_counter() + duration / 2
    while time.perf_counter() < deadline or not latencies:
        latencies.append(run([sequences[len(latencies) % len(sequences)]]))
    single = latency_row("raw", 1, len(latencies), sum(latencies), latencies, 1.0, 0.0)

    size = served.settings.max_batch_size
    batches = [sequences[start:start + size] for start in range(0, len(sequences), size)]
    elapsed, times, passes = _timed_passes(duration / 2, lambda: [run(batch) for batch in batches])
    arrival = latency_row("raw", size, len(sequences) * passes, elapsed, times, len(sequences) / len(batches),
                          padding_waste(batches), note="arrival order")
    return [single, arrival]


def padding_waste(batches: list[list[np.ndarray]]) -> float:
    padded = sum(max(map(len, batch)) * len(batch) for batch in batches)
    return 1 - sum(len(ids) for batch in batches for ids in batch) / padded


def ceiling_row(served: Served, duration: float, batch_size: int = CEILING_BATCH) -> Row:
    """A bare onnxruntime session on the served variant: length-sorted batches of `batch_size`."""
    import onnxruntime as ort

    from model_export import manifest as names
    from model_export.manifest import model_file

    options = ort.SessionOptions()
    options.intra_op_num_threads = served.settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    path = model_file(served.model_dir, served.manifest.variant(served.backend.info.variant).file)
    session = ort.InferenceSession(str(path), sess_options=options, providers=served.backend.info.providers)
    outputs = [names.SENTENCE_EMBEDDING] if served.task == "embed" else [names.MASK_LOGITS, names.MASK_POSITIONS]
    ordered = sorted(served.sequences, key=len)
    batches = [ordered[start:start + batch_size] for start in range(0, len(ordered), batch_size)]
    pad_id = served.manifest.special_tokens.pad.id
    feeds = []
    for batch in batches:
        ids = np.full((len(batch), max(map(len, batch))), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, sequence in enumerate(batch):
            ids[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1
        feeds.append({names.INPUT_IDS: ids, names.ATTENTION_MASK: mask})

    def one_pass() -> list[float]:
        times = []
        for feed in feeds:
            started = time.perf_counter()
            session.run(outputs, feed)
            times.append(time.perf_counter() - started)
        return times

    one_pass()  # warm-up: the first run of each shape allocates
    elapsed, times, passes = _timed_passes(duration, one_pass)
    return latency_row("ceiling", batch_size, len(ordered) * passes, elapsed, times, len(ordered) / len(batches),
                       padding_waste(batches), note="onnxruntime session, sorted by length")


def checkpoint_of(manifest: Manifest) -> Path | None:
    """The Hugging Face checkpoint the directory was exported from, when it is on this machine."""
    path = Path(manifest.source.id)
    return path if manifest.source.kind == "local" and path.is_dir() else None


def _torch_with_threads(threads: int) -> Any:
    """torch on `threads` threads, as many as the server's session gets; transformers without progress bars."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return torch


def sentence_transformers_row(checkpoint: Path, texts: list[str], duration: float, threads: int,
                              batch_size: int = CEILING_BATCH) -> Row:
    """sentence-transformers `encode` (it sorts by length itself); without the package, transformers with
    mean pooling in the same length-sorted batches, and the row's note says so."""
    torch = _torch_with_threads(threads)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        encode, note = _mean_pooling_encoder(checkpoint, batch_size), "transformers + mean pooling (no sentence-transformers)"
    else:
        model = SentenceTransformer(str(checkpoint), device="cpu")

        def encode(batch: list[str]) -> None:
            model.encode(batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

        note = "sentence-transformers encode"

    def one_pass() -> list[float]:
        started = time.perf_counter()
        with torch.inference_mode():
            encode(texts)
        return [time.perf_counter() - started]

    encode(texts[:batch_size])  # warm-up
    elapsed, times, passes = _timed_passes(duration, one_pass)
    return latency_row("sentence-transformers", batch_size, len(texts) * passes, elapsed, times, float(batch_size),
                       float("nan"), note=note)


def _mean_pooling_encoder(checkpoint: Path, batch_size: int) -> Callable[[list[str]], None]:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model = transformers.AutoModel.from_pretrained(checkpoint).eval()

    def encode(texts: list[str]) -> None:
        ordered = sorted(texts, key=len)
        for start in range(0, len(ordered), batch_size):
            inputs = tokenizer(ordered[start:start + batch_size], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    return encode


def fill_mask_pipeline_row(checkpoint: Path, texts: list[str], duration: float, threads: int, top_k: int = 5) -> Row:
    """transformers' pipeline("fill-mask") on the checkpoint, one text per call (batch size 1)."""
    import transformers

    torch = _torch_with_threads(threads)
    pipe = transformers.pipeline("fill-mask", model=str(checkpoint), device="cpu")
    latencies: list[float] = []
    with torch.inference_mode():
        pipe(texts[0], top_k=top_k)  # warm-up
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline or not latencies:
            started = time.perf_counter()
            pipe(texts[len(latencies) % len(texts)], top_k=top_k)
            latencies.append(time.perf_counter() - started)
    return latency_row("fill-mask-pipeline", 1, len(latencies), sum(latencies), latencies, 1.0, 0.0,
                       note="transformers pipeline, batch size 1")
