from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_export import manifest as manifest_module
from model_export.manifest import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    MANIFEST_FILE,
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
    assert intended_providers("fp32") == [CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER]
    assert intended_providers("fp32-unfused") == [TENSORRT_PROVIDER]  # TensorRT builds its own fp16, whole
    assert intended_providers("fp16-packed") == [CUDA_PROVIDER]
    assert intended_providers("int8") == [CPU_PROVIDER]
    manifest = verify_model_dir(tiny_exports["distilbert-mlm"])
    assert {name: variant.intended_providers for name, variant in manifest.variants.items()} == {
        name: intended_providers(name) for name in manifest.variants
    }


@pytest.fixture
def mlm_copy(tiny_mlm_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_mlm_model_dir, tmp_path / "model"))


def _list_variant_file(directory: Path, file: str) -> None:
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["variants"]["fp32"]["file"] = file
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def _outside_copy(directory: Path, name: str) -> Path:
    """A copy of the model's graph beside the model directory: its checksum matches the manifest."""
    outside = directory.parent / name
    shutil.copyfile(directory / "model.fp32.onnx", outside)
    return outside


@pytest.mark.parametrize("how", ["dot-dot", "absolute", "symlink"])
def test_a_listed_file_outside_the_directory_is_refused_before_it_is_read(
    mlm_copy: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = _outside_copy(mlm_copy, "outside.onnx")
    if how == "dot-dot":
        _list_variant_file(mlm_copy, "../outside.onnx")
    elif how == "absolute":
        _list_variant_file(mlm_copy, str(outside))
    else:
        (mlm_copy / "model.fp32.onnx").unlink()
        (mlm_copy / "model.fp32.onnx").symlink_to(outside)
    hashed: list[Path] = []
    sha256_file = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda path: hashed.append(Path(path).resolve()) or sha256_file(path))
    for variants in (None, []):  # the server checks only the tokenizer's checksum first: names are checked anyway
        with pytest.raises(ManifestError, match="fp32.*resolves outside the model directory"):
            verify_model_dir(mlm_copy, variants)
    assert outside not in hashed


def test_a_tokenizer_linked_from_outside_the_directory_is_refused(mlm_copy: Path) -> None:
    outside = mlm_copy.parent / "tokenizer.json"
    shutil.move(mlm_copy / "tokenizer.json", outside)
    (mlm_copy / "tokenizer.json").symlink_to(outside)
    with pytest.raises(ManifestError, match="tokenizer.*resolves outside the model directory"):
        verify_model_dir(mlm_copy, variants=[])


def test_a_max_length_beyond_the_position_table_is_refused(mlm_copy: Path) -> None:
    manifest = json.loads((mlm_copy / MANIFEST_FILE).read_text())
    assert manifest["arch"]["max_position_embeddings"] == 128  # the tiny checkpoint's
    manifest["max_length"] = 100000
    (mlm_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"max_length 100000 exceeds the position table \(arch.max_position_embeddings 128\)"):
        verify_model_dir(mlm_copy)
