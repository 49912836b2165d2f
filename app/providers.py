"""Execution-provider choices as pure functions: which providers, with which options, which variant.

onnxruntime-gpu falls back to CPU silently when CUDA cannot start, so nothing here trusts what was
requested: `check_active` compares the request with `session.get_providers()` after the session exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_export.manifest import (
    ATTENTION_MASK,
    CPU_PROVIDER,
    CUDA_PROVIDER,
    INPUT_IDS,
    TENSORRT_PROVIDER,
    VARIANTS_BY_PROVIDER,
    Manifest,
)

log = logging.getLogger("distilserve.providers")

CPU = CPU_PROVIDER
CUDA = CUDA_PROVIDER
TENSORRT = TENSORRT_PROVIDER
GPU_PROVIDERS = frozenset({CUDA, TENSORRT})

# The variant each provider wants when the operator does not choose: the exporter's table, which also
# writes every manifest's intended_providers, so the receipt and the server cannot disagree.
PREFERRED_VARIANTS = VARIANTS_BY_PROVIDER


class ProviderError(Exception):
    """Start-up cannot honour the provider configuration; the message says why."""


@dataclass(frozen=True)
class ShapeLimits:
    """The batch shapes the server will ever run, for TensorRT profiles and warm-up."""

    max_batch_size: int
    max_batch_tokens: int
    max_length: int

    def warmup_shapes(self) -> list[tuple[int, int]]:
        """(batch, sequence) pairs: the longest inputs that fit the budget, and the widest batch."""
        longest = (max(1, min(self.max_batch_size, self.max_batch_tokens // self.max_length)), self.max_length)
        widest_length = max(3, min(self.max_length, self.max_batch_tokens // self.max_batch_size))
        widest = (max(1, min(self.max_batch_size, self.max_batch_tokens // widest_length)), widest_length)
        return list(dict.fromkeys([longest, widest]))


def _profile(batch: int, sequence: int) -> str:
    return f"{INPUT_IDS}:{batch}x{sequence},{ATTENTION_MASK}:{batch}x{sequence}"


def provider_options(
    name: str,
    *,
    device_id: int = 0,
    limits: ShapeLimits | None = None,
    trt_fp16: bool = True,
    trt_cache_dir: Path | None = None,
    trt_workspace_bytes: int = 2 << 30,
    cuda_graph: bool = False,
) -> dict[str, Any]:
    """onnxruntime provider options (names from the CUDA and TensorRT execution provider docs)."""
    if name == CUDA:
        cuda: dict[str, Any] = {
            "device_id": device_id,
            "arena_extend_strategy": "kSameAsRequested",  # batch shapes vary; do not double the arena
            "cudnn_conv_algo_search": "HEURISTIC",
            "do_copy_in_default_stream": True,
        }
        if cuda_graph:
            # One graph captured per bucket shape (gpu_graph_id), replayed with the same bound buffers.
            cuda["enable_cuda_graph"] = True
        return cuda
    if name == TENSORRT:
        options: dict[str, Any] = {
            "device_id": device_id,
            "trt_fp16_enable": trt_fp16,
            # fp16 layer norms overflow on BERT activations; TensorRT keeps them in fp32 at little cost.
            "trt_layer_norm_fp32_fallback": trt_fp16,
            "trt_max_workspace_size": trt_workspace_bytes,
        }
        if trt_cache_dir is not None:
            options.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(trt_cache_dir),
                trt_timing_cache_enable=True,
                trt_timing_cache_path=str(trt_cache_dir),
            )
        if limits is not None:
            # One explicit profile covering every shape the batcher can produce, so TensorRT never
            # rebuilds an engine mid-traffic; opt is the widest batch at a typical sentence length.
            opt_length = min(limits.max_length, 128)
            opt_batch = max(1, min(limits.max_batch_size, limits.max_batch_tokens // opt_length))
            options.update(
                trt_profile_min_shapes=_profile(1, 1),
                trt_profile_opt_shapes=_profile(opt_batch, opt_length),
                trt_profile_max_shapes=_profile(limits.max_batch_size, limits.max_length),
            )
        return options
    return {}


def default_providers(available: list[str]) -> list[str]:
    """What to ask for when the operator does not say: CUDA then CPU where this build has CUDA, else
    CPU (a CPU-only install then starts without a warning about a provider it never had)."""
    return [CUDA, CPU] if CUDA in available else [CPU]


def plan_providers(requested: list[str], available: list[str], strict: bool) -> list[str]:
    """The requested providers this onnxruntime build has, in order; CPU is always the last resort."""
    usable = [name for name in requested if name in available]
    missing = [name for name in requested if name not in available]
    if missing:
        message = f"requested provider(s) {missing} not in this onnxruntime build (available: {available})"
        if strict and requested[0] in missing:
            raise ProviderError(message + "; strict_providers is set")
        log.warning("%s; skipping them", message)
    if TENSORRT in usable and CUDA not in usable and CUDA in available:
        usable.insert(usable.index(TENSORRT) + 1, CUDA)  # TensorRT hands unsupported nodes to CUDA
    if CPU not in usable:
        usable.append(CPU)
    return usable


def providers_from(planned: list[str], active: str) -> list[str]:
    """The planned providers from the one the session fell back to: TensorRT that fell back to CUDA
    reloads on CUDA (with CPU behind it), not on the CPU alone."""
    return planned[planned.index(active) :] if active in planned else [CPU]


def check_active(requested: list[str], planned: list[str], active: list[str], strict: bool) -> None:
    """Fail (strict) when the first requested provider is not the active one; warn when onnxruntime
    silently fell back from a provider this build has (CUDA libraries missing, no device)."""
    if strict and (not active or active[0] != requested[0]):
        raise ProviderError(f"requested {requested[0]} first but the session runs on {active}; strict_providers is set")
    if active and active[0] != planned[0]:
        log.warning("the session runs on %s although %s was available: onnxruntime fell back", active, planned[0])


# Variants whose graphs only one provider can run: onnxruntime has packed-attention kernels on CUDA only.
SINGLE_PROVIDER_VARIANTS = {"fp16-packed": CUDA}


def check_variant_provider(variant: str, provider: str) -> None:
    """Refuse, in one line, to run a variant on a provider that has no kernels for its ops."""
    needed = SINGLE_PROVIDER_VARIANTS.get(variant)
    if needed is not None and provider != needed:
        raise ProviderError(
            f"variant {variant} runs on {needed} only (onnxruntime has its packed-attention kernels there), "
            f"not on {provider}; choose another variant or provider"
        )


def choose_variant(manifest: Manifest, provider: str, override: str | None) -> str:
    if override is not None:
        manifest.variant(override)  # raises ManifestError naming what the directory has
        return override
    for name in PREFERRED_VARIANTS.get(provider, ("fp32",)):
        if name in manifest.variants:
            return name
    return next(iter(manifest.variants))
