"""Variants for the GPU providers: the unfused graph TensorRT compiles, and the packed fp16 graph for CUDA.

- `fp32-unfused`: the exported graph before onnxruntime's fusions. The fused contrib ops (Attention,
  EmbedLayerNormalization, SkipLayerNormalization) are not TensorRT ops: TensorRT would hand those nodes
  to CUDA and split the graph into many small engines. Given plain ONNX ops, TensorRT builds one engine
  and its own fp16 kernels (trt_fp16_enable, with layer norms kept in fp32). Gated like fp32, on the CPU.
- `fp16-packed`: the fp16 graph in onnxruntime's packing mode. RemovePadding, placed after the embeddings,
  drops the padding tokens; every layer's PackedAttention and feed-forward then run on real tokens only;
  RestorePadding puts the rows back before pooling and the masked-LM head. The graph's inputs stay the
  right-padded input_ids and attention_mask (RemovePadding reads each row's token count from the
  embedding layer's mask index), so what padding costs is the embeddings, not the layers. onnxruntime
  has kernels for these ops on CUDA only: the gate runs where CUDA is (`python -m app.gpu_check`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import onnx

from model_export.errors import ExportError
from model_export.variants import convert_fp16

UNFUSED = "fp32-unfused"
PACKED = "fp16-packed"
GPU_VARIANT_NAMES = (UNFUSED, PACKED)
GPU_DTYPES = {UNFUSED: "float32", PACKED: "float16"}
CONTRIB_DOMAIN = "com.microsoft"
PACKED_OPS = ("RemovePadding", "PackedAttention", "RestorePadding")
# The manifest's word for a variant whose gate must run elsewhere than the export.
NEEDS_CUDA = "needs CUDA: onnxruntime has packed-attention kernels on the CUDA provider only; `python -m app.gpu_check` gates it there"


def contrib_ops(model: onnx.ModelProto) -> dict[str, int]:
    """onnxruntime's own (com.microsoft) ops in `model`, by type: what other runtimes cannot parse."""
    return dict(Counter(node.op_type for node in model.graph.node if node.domain == CONTRIB_DOMAIN))


# The gate each GPU variant must pass: fp32's for the unfused graph (same weights, same maths), fp16's for
# the packed one (fp16 kernels, padding removed).
GATED_AS = {UNFUSED: "fp32", PACKED: "fp16"}


def gate_name(variant: str, provider_has_kernels: bool = False) -> str | None:
    """The gate `variant` passes where it is exported (the CPU): None for the packed graph, which has no
    kernels there, unless `provider_has_kernels` (the GPU check's CUDA gate)."""
    if variant == PACKED and not provider_has_kernels:
        return None
    return GATED_AS.get(variant, variant)


def build_unfused(raw_path: Path, out_path: Path) -> None:
    """The exported graph as it is: plain ONNX ops, fp32 weights, opset-17 LayerNormalization."""
    found = contrib_ops(onnx.load(str(raw_path), load_external_data=False))
    if found:
        raise ExportError(f"the unfused graph holds onnxruntime contrib ops {found}, which TensorRT cannot parse")
    shutil.copyfile(raw_path, out_path)


def build_gpu_variant(name: str, raw_path: Path, optimized_path: Path, out_path: Path) -> None:
    """`name` from the exported graph (`raw_path`) or the fused fp32 one (`optimized_path`)."""
    if name == UNFUSED:
        build_unfused(raw_path, out_path)
    elif name == PACKED:
        fp16_path = out_path.with_name(out_path.name + ".unpacked")
        convert_fp16(optimized_path, fp16_path)
        build_packed(fp16_path, out_path)
        fp16_path.unlink()
    else:
        raise ExportError(f"{name!r} is not a GPU variant ({', '.join(GPU_VARIANT_NAMES)})")


def build_packed(fp16_path: Path, out_path: Path) -> None:
    """The fp16 graph with padding removed after the embeddings and restored after the last encoder layer."""
    from onnxruntime.transformers.convert_to_packing_mode import PackingAttention
    from onnxruntime.transformers.onnx_model import OnnxModel

    class EncoderPacking(PackingAttention):
        """onnxruntime's packing restores padding after the graph's last layer norm; in a masked-LM graph
        that is the head's (on [MASK] rows only), so restore after the encoder's last SkipLayerNormalization."""

        def _try_getting_last_layernorm(self):  # noqa: ANN202 - onnxruntime's NodeProto | None
            skip = [node for node in self.model.nodes() if node.op_type == "SkipLayerNormalization"]
            return skip[-1] if skip else None

    model = OnnxModel(onnx.load(str(fp16_path)))
    model.topological_sort()
    num_layers = len(model.get_nodes_by_op_type("Attention"))  # the export asserted one per layer
    EncoderPacking(model).convert()
    missing = packing_problems(model.model, num_layers)
    if missing:
        raise ExportError(f"packing mode did not convert the graph: {'; '.join(missing)}")
    model.save_model_to_file(str(out_path))


def packing_problems(model: onnx.ModelProto, num_layers: int) -> list[str]:
    """What a packed graph lacks, in words; empty when padding is removed once, every layer's attention is
    packed, and padding is restored once."""
    counts = Counter(node.op_type for node in model.graph.node)
    problems = [f"{op} {counts[op]}, expected 1" for op in ("RemovePadding", "RestorePadding") if counts[op] != 1]
    if counts["PackedAttention"] != num_layers:
        problems.append(f"PackedAttention {counts['PackedAttention']} of {num_layers} layers")
    if counts["Attention"]:
        problems.append(f"{counts['Attention']} unpacked Attention left")
    return problems
