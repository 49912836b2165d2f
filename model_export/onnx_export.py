"""torch -> ONNX with the TorchScript exporter (dynamo=False), which is the export that fuses."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from model_export.graph import ServingGraph
from model_export.manifest import ATTENTION_MASK, INPUT_IDS, MASK_LOGITS, MASK_POSITIONS, SENTENCE_EMBEDDING


def export_onnx(graph: ServingGraph, path: Path, opset: int, example_token_id: int) -> None:
    """Write `graph` to `path` with dynamic batch and sequence axes (and a dynamic mask count)."""
    batch, sequence = 2, 8
    input_ids = torch.full((batch, sequence), example_token_id, dtype=torch.long)
    if graph.mask_token_id is not None:
        input_ids[0, 3] = graph.mask_token_id
    attention_mask = torch.ones((batch, sequence), dtype=torch.long)
    attention_mask[1, -2:] = 0
    dynamic_axes = {
        INPUT_IDS: {0: "batch", 1: "sequence"},
        ATTENTION_MASK: {0: "batch", 1: "sequence"},
        SENTENCE_EMBEDDING: {0: "batch"},
        MASK_LOGITS: {0: "num_masks"},
        MASK_POSITIONS: {0: "num_masks"},
    }
    output_names = graph.output_names
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python-side shape checks inside transformers; they do not affect
        # the graph (the parity check afterwards is the proof), and they would clutter the CLI.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.eval(),
            (input_ids, attention_mask),
            str(path),
            input_names=[INPUT_IDS, ATTENTION_MASK],
            output_names=output_names,
            dynamic_axes={name: axes for name, axes in dynamic_axes.items() if name in (INPUT_IDS, ATTENTION_MASK, *output_names)},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
