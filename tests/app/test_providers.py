"""Provider planning, options and variant choice: pure functions, testable without a GPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from app.backend import OnnxBackend, TokenBatch, TokenItem, Wants, pad, split_outputs
from app.providers import (
    CPU,
    CUDA,
    PREFERRED_VARIANTS,
    TENSORRT,
    ProviderError,
    ShapeLimits,
    check_active,
    choose_variant,
    default_providers,
    plan_providers,
    provider_options,
)
from app.settings import Settings
from model_export.manifest import VARIANTS_BY_PROVIDER, Manifest, ManifestError, read_manifest

LIMITS = ShapeLimits(max_batch_size=32, max_batch_tokens=8192, max_length=512)


def test_tensorrt_options_carry_fp16_cache_and_one_profile_for_every_shape(tmp_path: Path) -> None:
    options = provider_options(TENSORRT, device_id=1, limits=LIMITS, trt_fp16=True, trt_cache_dir=tmp_path)
    assert options["device_id"] == 1 and options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_enable"] is True and options["trt_engine_cache_path"] == str(tmp_path)
    assert options["trt_timing_cache_enable"] is True
    assert options["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    assert options["trt_profile_opt_shapes"] == "input_ids:32x128,attention_mask:32x128"
    assert options["trt_profile_max_shapes"] == "input_ids:32x512,attention_mask:32x512"
    no_cache = provider_options(TENSORRT, limits=None, trt_fp16=False, trt_cache_dir=None)
    assert no_cache["trt_fp16_enable"] is False and "trt_engine_cache_path" not in no_cache
    assert "trt_profile_max_shapes" not in no_cache


def test_cuda_options_and_cpu_has_none() -> None:
    cuda = provider_options(CUDA, device_id=2)
    assert cuda["device_id"] == 2 and cuda["arena_extend_strategy"] == "kSameAsRequested"
    assert provider_options(CPU) == {}


def test_plan_skips_unavailable_providers_and_keeps_cpu_last(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert plan_providers([CUDA, CPU], [CPU], strict=False) == [CPU]
    assert "CUDAExecutionProvider" in caplog.text
    assert plan_providers([TENSORRT, CPU], [TENSORRT, CUDA, CPU], strict=False) == [TENSORRT, CUDA, CPU]
    assert plan_providers([CUDA], [CUDA, CPU], strict=False) == [CUDA, CPU]


def test_strict_refuses_a_missing_first_provider() -> None:
    with pytest.raises(ProviderError, match="strict_providers"):
        plan_providers([CUDA, CPU], [CPU], strict=True)
    assert plan_providers([CPU, CUDA], [CPU], strict=True) == [CPU]  # only the first one must be there


def test_check_active_catches_the_silent_cpu_fallback(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ProviderError, match="runs on \\['CPUExecutionProvider'\\]"):
        check_active([CUDA, CPU], [CUDA, CPU], [CPU], strict=True)
    with caplog.at_level(logging.WARNING):
        check_active([CUDA, CPU], [CUDA, CPU], [CPU], strict=False)
    assert "fell back" in caplog.text
    check_active([CUDA, CPU], [CUDA, CPU], [CUDA, CPU], strict=True)  # the good case passes


def _manifest(tiny_mlm_model_dir: Path, variants: list[str]) -> Manifest:
    manifest = read_manifest(tiny_mlm_model_dir)
    fp32 = manifest.variants["fp32"]
    dtypes = {"fp32": "float32", "fp16": "float16", "int8": "int8"}
    return manifest.model_copy(
        update={"variants": {name: fp32.model_copy(update={"dtype": dtypes[name]}) for name in variants}}
    )


def test_variant_per_provider_and_override(tiny_mlm_model_dir: Path) -> None:
    full = _manifest(tiny_mlm_model_dir, ["fp32", "fp16", "int8"])
    assert choose_variant(full, CUDA, None) == "fp16"
    assert choose_variant(full, TENSORRT, None) == "fp32"  # TensorRT builds its own fp16 engine
    assert choose_variant(full, CPU, None) == "fp32"
    assert choose_variant(full, CPU, "int8") == "int8"
    only_fp32 = _manifest(tiny_mlm_model_dir, ["fp32"])
    assert choose_variant(only_fp32, CUDA, None) == "fp32"
    with pytest.raises(ManifestError, match="int8"):
        choose_variant(only_fp32, CPU, "int8")


def test_the_server_prefers_what_the_manifest_intends(tiny_mlm_model_dir: Path) -> None:
    """One table, in model_export: fp32 is CPU's first choice, and CUDA's and TensorRT's fallback (TensorRT
    prefers the unfused graph)."""
    assert PREFERRED_VARIANTS is VARIANTS_BY_PROVIDER
    assert read_manifest(tiny_mlm_model_dir).variants["fp32"].intended_providers == [CPU, CUDA, TENSORRT]


def test_warmup_shapes_cover_the_longest_inputs_and_the_widest_batch() -> None:
    assert LIMITS.warmup_shapes() == [(16, 512), (32, 256)]
    assert ShapeLimits(4, 100, 50).warmup_shapes() == [(2, 50), (4, 25)]


def test_split_outputs_groups_mask_rows_by_item() -> None:
    embeddings = np.arange(6, dtype=np.float32).reshape(3, 2)
    logits = np.arange(12, dtype=np.float32).reshape(3, 4)
    positions = np.array([[0, 2], [2, 1], [2, 4]])
    items = split_outputs(embeddings, logits, positions)
    assert [item.mask_logits.shape[0] for item in items] == [1, 0, 2]  # type: ignore[union-attr]
    np.testing.assert_array_equal(items[2].mask_logits, logits[1:])  # type: ignore[arg-type]
    np.testing.assert_array_equal(items[1].embedding, embeddings[1])


def test_io_binding_path_matches_plain_run(tiny_mlm_model_dir: Path) -> None:
    """The CUDA IO-binding code path, exercised on CPU memory: same outputs as session.run."""
    manifest = read_manifest(tiny_mlm_model_dir)
    settings = Settings(model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1)
    backend = OnnxBackend(tiny_mlm_model_dir, manifest, settings, ShapeLimits(4, 512, 128), settings.trt_cache_path)
    assert backend.info.io_binding is False and backend.info.providers == [CPU]
    wants = Wants(embedding=True, mask_top_k=5)
    batch = TokenBatch.of(
        [TokenItem(np.array(ids), wants) for ids in ([101, 7592, 103, 102], [101, 103, 2088, 103, 1012, 102])]
    )
    plain = backend.run(batch)
    bound = backend._run_bound(pad(batch, 0), "cpu")
    np.testing.assert_allclose(bound["sentence_embedding"], np.stack([item.embedding for item in plain]), atol=1e-6)
    np.testing.assert_allclose(
        bound["mask_logits"], np.concatenate([item.mask_logits for item in plain]), atol=1e-5  # type: ignore[misc]
    )
    assert [item.mask_logits.shape[0] for item in plain] == [1, 2]  # type: ignore[union-attr]


def test_unset_providers_follow_the_installed_build() -> None:
    assert default_providers([CPU, "AzureExecutionProvider"]) == [CPU]
    assert default_providers([TENSORRT, CUDA, CPU]) == [CUDA, CPU]  # TensorRT only when asked for


def test_a_cpu_build_starts_without_a_provider_warning(tiny_mlm_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = read_manifest(tiny_mlm_model_dir)
    settings = Settings(model_dir=[tiny_mlm_model_dir], intra_op_threads=1)
    assert settings.providers is None
    with caplog.at_level(logging.WARNING):
        backend = OnnxBackend(tiny_mlm_model_dir, manifest, settings, ShapeLimits(4, 512, 128), settings.trt_cache_path)
    assert backend.info.requested_providers == [CPU] and backend.info.providers == [CPU]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text
