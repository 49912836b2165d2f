from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_export.manifest import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    ManifestError,
    intended_providers,
    verify_model_dir,
)


@pytest.fixture
def model_copy(tiny_exports, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_exports["distilbert-mlm"], tmp_path / "model"))


@pytest.mark.parametrize("file", ["model.fp32.onnx", "tokenizer.json"])
def test_tampered_file_is_refused(model_copy: Path, file: str) -> None:
    verify_model_dir(model_copy)
    data = bytearray((model_copy / file).read_bytes())
    data[len(data) // 2] ^= 0x01
    (model_copy / file).write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        verify_model_dir(model_copy)


def test_missing_variant_file_is_refused(model_copy: Path) -> None:
    (model_copy / "model.fp32.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        verify_model_dir(model_copy)


def test_missing_or_broken_manifest_is_refused(model_copy: Path) -> None:
    (model_copy / "manifest.json").write_text("{}")
    with pytest.raises(ManifestError, match="invalid manifest"):
        verify_model_dir(model_copy)
    (model_copy / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        verify_model_dir(model_copy)


def test_intended_providers_follow_the_one_provider_table(tiny_exports) -> None:
    assert intended_providers("fp16") == [CUDA_PROVIDER, TENSORRT_PROVIDER]
    assert intended_providers("fp32") == [CPU_PROVIDER, TENSORRT_PROVIDER, CUDA_PROVIDER]  # TensorRT builds its own fp16
    assert intended_providers("int8") == [CPU_PROVIDER]
    manifest = verify_model_dir(tiny_exports["distilbert-mlm"])
    assert {name: variant.intended_providers for name, variant in manifest.variants.items()} == {
        name: intended_providers(name) for name in manifest.variants
    }
