"""Derive the fp16 and int8 variants from the optimized fp32 graph."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

from model_export.errors import InvalidOptionError

VARIANT_NAMES = ("fp32", "fp16", "int8")
DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8"}


def variant_file(name: str) -> str:
    return f"model.{name}.onnx"


def convert_fp16(fp32_path: Path, out_path: Path) -> None:
    """Weights and compute in float16; inputs and outputs stay as they were (fp32 I/O)."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fp32_path)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(out_path))


# Scopes of int8 quantization, tried in this order until one passes the parity gate. Dynamic
# quantization gives each activation tensor one scale; the feed-forward products' inputs (LayerNorm
# outputs with outlier channels, GELU outputs with long tails) suffer most: on all-MiniLM-L6-v2,
# quantizing them drops the embeddings' worst cosine to 0.980 while int8 weights alone keep 0.998.
INT8_SCOPES = {
    "all": "every matrix product (attention, feed-forward, vocab projection) and the embeddings",
    "attention": "attention blocks only (QKV and output projections); feed-forward products kept fp32",
}


def feed_forward_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMuls feeding, or fed by, a GELU: the feed-forward up and down projections."""
    gelu_ops = ("BiasGelu", "Gelu", "FastGelu")
    gelu_inputs = {name for node in model.graph.node if node.op_type in gelu_ops for name in node.input}
    gelu_outputs = {name for node in model.graph.node if node.op_type in gelu_ops for name in node.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and (node.output[0] in gelu_inputs or node.input[0] in gelu_outputs)
    ]


def quantize_int8(fp32_path: Path, out_path: Path, scope: str = "all") -> None:
    """Per-channel dynamic int8 quantization of the weights (activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if scope not in INT8_SCOPES:
        raise InvalidOptionError(f"unknown int8 scope {scope!r}; choose from {', '.join(INT8_SCOPES)}")
    excluded = feed_forward_matmuls(onnx.load(str(fp32_path))) if scope == "attention" else []
    with _root_logger_quiet():
        quantize_dynamic(
            fp32_path,
            out_path,
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            # The optimizer's fused ops carry no type info for some weights; without this the
            # quantizer stops with "Unable to find data type for weight_name".
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


@contextmanager
def _root_logger_quiet() -> Iterator[None]:
    """The quantizer logs advisory warnings on the root logger (run pre-processing; it leaves the
    int64 NonZero output alone, rightly); parity validation is what judges the result."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def build_variant(name: str, fp32_path: Path, out_path: Path, int8_scope: str = "all") -> None:
    if name == "fp16":
        convert_fp16(fp32_path, out_path)
    elif name == "int8":
        quantize_int8(fp32_path, out_path, int8_scope)
    else:
        # fp32 is not built: it is the optimized graph itself, copied as is.
        raise InvalidOptionError(f"cannot derive variant {name!r} from the fp32 graph; derived variants are fp16 and int8")
