"""What this host offers: which mode the check runs in, where the CUDA libraries are, the facts a
reader of the numbers needs, and a preflight that a bare process can start a session on the provider.

onnxruntime-gpu finds CUDA and cuDNN on the loader path, or already loaded by torch. The parent process
imports torch first; a server subprocess does not import torch, so it gets the directories of NVIDIA's
wheels on LD_LIBRARY_PATH (what the GPU image does with /opt/cuda-libs).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from model_export.manifest import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER

REPO_ROOT = Path(__file__).resolve().parents[2]
_LIBRARY_GLOBS = ("nvidia/*/lib", "nvidia/*/lib64", "tensorrt_libs")


def cuda_library_dirs(paths: list[str] | None = None) -> list[str]:
    """Directories of NVIDIA's CUDA, cuDNN and TensorRT wheels found on `paths` (sys.path)."""
    found: list[str] = []
    for entry in sys.path if paths is None else paths:
        root = Path(entry or ".")
        for pattern in _LIBRARY_GLOBS:
            for directory in sorted(root.glob(pattern)):
                if directory.is_dir() and any(directory.glob("lib*.so*")) and str(directory) not in found:
                    found.append(str(directory))
    return found


def library_path(existing: str | None, directories: list[str]) -> str:
    """LD_LIBRARY_PATH with `directories` first, each once."""
    parts = [part for part in (existing or "").split(os.pathsep) if part]
    return os.pathsep.join(list(dict.fromkeys(directories + parts)))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a server (or preflight) subprocess adds to this environment: the CUDA libraries' directories."""
    env = dict(extra or {})
    directories = cuda_library_dirs()
    if directories:
        env["LD_LIBRARY_PATH"] = library_path(os.environ.get("LD_LIBRARY_PATH"), directories)
    return env


def gpu_visible() -> bool:
    """A CUDA device torch can use, or, where torch is a CPU build, one that nvidia-smi lists."""
    import torch

    if torch.cuda.is_available():
        return True
    return bool(_nvidia_smi("name"))


def choose_mode(requested: str) -> tuple[str | None, str]:
    """("gpu" or "cpu", why); (None, why) when `requested` cannot be honoured."""
    import onnxruntime as ort

    has_cuda_ep = CUDA_PROVIDER in ort.get_available_providers()
    has_gpu = gpu_visible()
    if has_cuda_ep and has_gpu:
        why = "onnxruntime has the CUDA provider and a GPU is visible"
        return ("cpu", "asked for the CPU mode") if requested == "cpu" else ("gpu", why)
    missing = "onnxruntime has no CUDA provider (install onnxruntime-gpu)" if not has_cuda_ep else "no GPU is visible"
    if requested == "gpu":
        return None, f"the GPU mode was asked for, but {missing}"
    return "cpu", missing


def tensorrt_status(available: list[str]) -> tuple[bool, str]:
    """Whether the TensorRT provider can start: onnxruntime-gpu lists it even where libnvinfer is absent."""
    if TENSORRT_PROVIDER not in available:
        return False, "this onnxruntime build has no TensorRT provider"
    candidates = [str(path) for directory in cuda_library_dirs() for path in sorted(Path(directory).glob("libnvinfer.so.*"))]
    for name in [*candidates, "libnvinfer.so.10", "libnvinfer.so"]:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True, f"TensorRT found ({name})"
    return False, "onnxruntime lists TensorRT, but libnvinfer (TensorRT 10) is not installed"


def _nvidia_smi(fields: str) -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def describe(mode: str, why: str) -> dict[str, Any]:
    """The conditions of the numbers: hardware, driver, library versions, providers."""
    import onnxruntime as ort
    import torch

    available = ort.get_available_providers()
    tensorrt, tensorrt_why = tensorrt_status(available)
    return {
        "mode": mode,
        "mode_reason": why,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": _nvidia_smi("name,driver_version,memory.total"),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_sees_gpu": torch.cuda.is_available(),
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": available,
        "tensorrt": tensorrt,
        "tensorrt_reason": tensorrt_why,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "commit": _git_commit(),
        "cuda_library_dirs": cuda_library_dirs(),
    }


def preflight(providers: list[str], env: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """Start a session on `providers` in a bare subprocess with the servers' environment; its report."""
    command = [sys.executable, "-m", "app.gpu_check.preflight", *providers]
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, **env), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"active": [], "error": f"no answer in {timeout:.0f} s"}
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"active": [], "error": f"exit {result.returncode}: {result.stderr.strip()[-800:]}"}


def providers_for(provider: str) -> list[str]:
    """The provider list a session asks for, CPU last as the server plans it."""
    if provider == CPU_PROVIDER:
        return [CPU_PROVIDER]
    if provider == TENSORRT_PROVIDER:
        return [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]
    return [provider, CPU_PROVIDER]
