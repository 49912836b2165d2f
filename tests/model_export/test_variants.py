from __future__ import annotations

from pathlib import Path

import pytest

from model_export.errors import InvalidOptionError
from model_export.variants import build_variant


def test_int8_is_left_to_the_searching_quantizer(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="model_export.quantize.build_int8"):
        build_variant("int8", tmp_path / "model.onnx", tmp_path / "model.int8.onnx")


@pytest.mark.parametrize("name", ["fp32", "fp8"])
def test_only_fp16_and_int8_are_derived(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"cannot derive variant '{name}'"):
        build_variant(name, tmp_path / "model.onnx", tmp_path / f"model.{name}.onnx")
