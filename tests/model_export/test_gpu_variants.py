"""The GPU variants' graphs, checked with onnx on the CPU: the unfused graph TensorRT compiles whole, and
the packed fp16 graph whose kernels exist on CUDA only (its gate runs in `python -m app.gpu_check`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest

from model_export.errors import ExportError, InvalidOptionError
from model_export.gpu_variants import NEEDS_CUDA, PACKED, UNFUSED, build_packed, build_unfused, contrib_ops, packing_problems
from model_export.manifest import ATTENTION_MASK, CUDA_PROVIDER, INPUT_IDS, TENSORRT_PROVIDER, read_manifest, verify_model_dir
from model_export.pipeline import ExportOptions, export_model

KINDS = ("distilbert-mlm", "bert-encoder")


@pytest.fixture(scope="module")
def gpu_exports(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints: dict[str, Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu-export")
    options = ExportOptions(variants=("fp32", UNFUSED, PACKED))
    for kind in KINDS:
        export_model(str(tiny_checkpoints[kind]), root / kind, options, lambda _: None)
    return {kind: root / kind for kind in KINDS}


def graph(model_dir: Path, variant: str) -> onnx.ModelProto:
    return onnx.load(str(model_dir / read_manifest(model_dir).variant(variant).file))


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    (node,) = [node for node in model.graph.node if tensor in node.output]
    return node


@pytest.mark.parametrize("kind", KINDS)
def test_the_unfused_graph_has_no_onnxruntime_contrib_ops_and_passes_the_fp32_gate(gpu_exports: dict[str, Path], kind: str) -> None:
    model_dir = gpu_exports[kind]
    assert contrib_ops(graph(model_dir, UNFUSED)) == {}
    assert contrib_ops(graph(model_dir, "fp32")), "the fused graph, for contrast, is made of contrib ops"
    ops = Counter(node.op_type for node in graph(model_dir, UNFUSED).graph.node)
    assert ops["LayerNormalization"] and ops["MatMul"], "plain ONNX layer norms and products, for TensorRT to fuse itself"
    variant = verify_model_dir(model_dir, [UNFUSED]).variant(UNFUSED)
    assert variant.dtype == "float32" and variant.gate_pending is None
    assert variant.parity is not None and variant.parity.embedding_max_abs_diff <= 1e-4
    assert variant.parity.gate == read_manifest(model_dir).variant("fp32").parity.gate
    assert variant.intended_providers == [TENSORRT_PROVIDER]


@pytest.mark.parametrize("kind", KINDS)
def test_the_packed_graph_removes_padding_once_packs_every_layer_and_restores_it_for_pooling(
    gpu_exports: dict[str, Path], kind: str
) -> None:
    model = graph(gpu_exports[kind], PACKED)
    assert packing_problems(model, 2) == []
    packed = {node.op_type: node for node in model.graph.node if node.domain == "com.microsoft"}
    assert {"RemovePadding", "PackedAttention", "RestorePadding"} <= set(packed)
    # RemovePadding reads each row's token count from the embedding layer's mask index, whose mask input
    # is the graph's attention_mask: right-padded ids and mask, as the backend feeds them.
    counts = producer(model, packed["RemovePadding"].input[1])
    assert counts.op_type == "EmbedLayerNormalization"
    mask = counts.input[7]
    assert producer(model, mask).input[0] == ATTENTION_MASK
    # Padding comes back after the encoder's last layer, not after the masked-LM head's layer norm.
    skip = [node for node in model.graph.node if node.op_type == "SkipLayerNormalization"]
    assert producer(model, packed["RestorePadding"].input[0]) is skip[-1]
    # PackedAttention takes the token offsets and cumulative lengths RemovePadding computed.
    remove = packed["RemovePadding"]
    for node in model.graph.node:
        if node.op_type == "PackedAttention":
            assert node.input[3] == remove.output[1] and node.input[4] == remove.output[2]
    inputs = {tensor.name: tensor for tensor in model.graph.input}
    assert sorted(inputs) == sorted([INPUT_IDS, ATTENTION_MASK])
    for tensor in inputs.values():
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [dim.dim_param for dim in tensor.type.tensor_type.shape.dim] == ["batch", "sequence"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_manifest_says_the_packed_graph_is_gated_on_cuda(gpu_exports: dict[str, Path], kind: str) -> None:
    variant = verify_model_dir(gpu_exports[kind], [PACKED]).variant(PACKED)
    assert variant.parity is None
    assert variant.gate_pending == NEEDS_CUDA
    assert variant.dtype == "float16"
    assert variant.intended_providers == [CUDA_PROVIDER]


def test_the_cpu_provider_cannot_run_the_packed_graph(gpu_exports: dict[str, Path]) -> None:
    """Why the packed graph's gate needs CUDA: the CPU provider has no kernel for its ops."""
    import onnxruntime as ort

    path = gpu_exports["bert-encoder"] / read_manifest(gpu_exports["bert-encoder"]).variant(PACKED).file
    with pytest.raises(Exception, match="RemovePadding|PackedAttention|RestorePadding"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_unfused_refuses_a_graph_with_contrib_ops(gpu_exports: dict[str, Path], tmp_path: Path) -> None:
    fused = gpu_exports["bert-encoder"] / read_manifest(gpu_exports["bert-encoder"]).variant("fp32").file
    with pytest.raises(ExportError, match="contrib ops"):
        build_unfused(fused, tmp_path / "out.onnx")


def test_packing_refuses_a_graph_without_attention(gpu_exports: dict[str, Path], tmp_path: Path) -> None:
    unfused = gpu_exports["bert-encoder"] / read_manifest(gpu_exports["bert-encoder"]).variant(UNFUSED).file
    with pytest.raises(ExportError, match="packing mode did not convert the graph: RemovePadding 0"):
        build_packed(unfused, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_export_options_know_the_gpu_variants() -> None:
    ExportOptions(variants=(UNFUSED, PACKED)).check()
    with pytest.raises(InvalidOptionError, match="fp32-unfused, fp16-packed"):
        ExportOptions(variants=("fp8",)).check()


def test_the_export_summary_says_where_the_packed_graph_is_gated(gpu_exports: dict[str, Path]) -> None:
    from model_export.__main__ import render_summary

    model_dir = gpu_exports["bert-encoder"]
    rows = {line.split(" | ")[0]: line for line in render_summary(read_manifest(model_dir), model_dir).splitlines()}
    assert rows["| fp16-packed"].endswith(f"| {NEEDS_CUDA} |")
    assert "max abs diff <= 0.0001" in [line for key, line in rows.items() if key == "| fp32-unfused"][0]
