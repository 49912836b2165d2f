"""torch -> ONNX with the TorchScript exporter (dynamo=False), which is the export that fuses."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from model_export.graph import ClassifierGraph, ServingGraph
from model_export.manifest import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    TOKEN_TYPE_IDS,
)


def export_onnx(graph: ServingGraph | ClassifierGraph, path: Path, opset: int, example_token_id: int) -> None:
    """Write `graph` to `path` with dynamic batch and sequence axes (and a dynamic mask count)."""
    batch, sequence = 2, 8
    input_ids = torch.full((batch, sequence), example_token_id, dtype=torch.long)
    if graph.mask_token_id is not None:
        input_ids[0, 3] = graph.mask_token_id
    attention_mask = torch.ones((batch, sequence), dtype=torch.long)
    attention_mask[1, -2:] = 0
    token_type_ids = torch.zeros((batch, sequence), dtype=torch.long)
    token_type_ids[0, 4:] = 1  # a pair: segment B from position 4
    examples = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask, TOKEN_TYPE_IDS: token_type_ids}
    per_token = isinstance(graph, ClassifierGraph) and graph.per_token
    dynamic_axes = {
        INPUT_IDS: {0: "batch", 1: "sequence"},
        ATTENTION_MASK: {0: "batch", 1: "sequence"},
        TOKEN_TYPE_IDS: {0: "batch", 1: "sequence"},
        SENTENCE_EMBEDDING: {0: "batch"},
        MASK_LOGITS: {0: "num_masks"},
        MASK_POSITIONS: {0: "num_masks"},
        LOGITS: {0: "batch", 1: "sequence"} if per_token else {0: "batch"},
    }
    input_names, output_names = graph.input_names, graph.output_names
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python-side shape checks inside transformers; they do not affect
        # the graph (the parity check afterwards is the proof), and they would clutter the CLI.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.eval(),
            tuple(examples[name] for name in input_names),
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: axes for name, axes in dynamic_axes.items() if name in (*input_names, *output_names)},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
