"""Run the onnxruntime transformer optimizer and assert that attention and layer norms fused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from model_export.errors import FusionError

REPORTED_OPS = (
    "Attention",
    "QAttention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "QEmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "Gelu",
    "FastGelu",
    "DynamicQuantizeMatMul",
    "MatMulInteger",
)


def fused_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(node.op_type for node in model.graph.node)
    return {op: counts[op] for op in REPORTED_OPS if counts[op]}


def missing_fusions(counts: dict[str, int], num_layers: int) -> list[str]:
    """What the server relies on that did not fuse, in words; empty when all fused."""
    missing = []
    if counts.get("Attention", 0) != num_layers:
        missing.append(f"Attention {counts.get('Attention', 0)} of {num_layers} layers")
    for op in ("EmbedLayerNormalization", "SkipLayerNormalization"):
        if not counts.get(op):
            missing.append(f"no {op}")
    return missing


def optimize(path_in: Path, path_out: Path, num_heads: int, hidden_size: int, num_layers: int, allow_unfused: bool) -> tuple[dict[str, int], bool]:
    """Optimize `path_in` into `path_out`; returns (fused-op counts, whether fusion was asserted).

    Raises FusionError when something did not fuse, unless `allow_unfused`.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # model_type "bert" serves DistilBERT too: the optimizer has no distilbert model_type, and the
    # bert patterns match both graphs (asserted below, never assumed).
    optimized = optimize_model(
        str(path_in), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=None
    )
    optimized.topological_sort()
    counts = fused_op_counts(optimized.model)
    missing = missing_fusions(counts, num_layers)
    if missing and not allow_unfused:
        raise FusionError(missing, counts)
    optimized.save_model_to_file(str(path_out))
    return counts, not missing
