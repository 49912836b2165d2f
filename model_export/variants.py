"""Derive the fp16 and int8 variants from the optimized fp32 graph."""

from __future__ import annotations

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


def build_variant(name: str, fp32_path: Path, out_path: Path) -> None:
    if name == "fp16":
        convert_fp16(fp32_path, out_path)
    elif name == "int8":
        # Its search measures every trial against the PyTorch reference, so it runs in the pipeline.
        raise InvalidOptionError("int8 is built by model_export.quantize.build_int8, which searches against the parity gate")
    else:
        # fp32 is not built: it is the optimized graph itself, copied as is.
        raise InvalidOptionError(f"cannot derive variant {name!r} from the fp32 graph; derived variants are fp16 and int8")
