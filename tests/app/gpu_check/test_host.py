"""Host facts: the CUDA libraries' directories, the mode, the preflight."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.gpu_check import host


def test_cuda_library_dirs_are_the_nvidia_wheels_lib_folders(tmp_path: Path) -> None:
    for folder in ("nvidia/cu13/lib", "nvidia/cudnn/lib", "nvidia/empty/lib", "tensorrt_libs"):
        (tmp_path / folder).mkdir(parents=True)
    for library in ("nvidia/cu13/lib/libcublas.so.13", "nvidia/cudnn/lib/libcudnn.so.9", "tensorrt_libs/libnvinfer.so.10"):
        (tmp_path / library).touch()
    found = host.cuda_library_dirs([str(tmp_path), str(tmp_path)])
    assert found == [str(tmp_path / "nvidia/cu13/lib"), str(tmp_path / "nvidia/cudnn/lib"), str(tmp_path / "tensorrt_libs")]
    assert host.cuda_library_dirs([str(tmp_path / "nowhere")]) == []


def test_library_path_puts_the_wheels_first_once() -> None:
    assert host.library_path("/opt/a:/b", ["/w1", "/b"]) == "/w1:/b:/opt/a"
    assert host.library_path(None, ["/w1"]) == "/w1"
    assert host.library_path("", []) == ""


def test_child_env_adds_the_library_path_only_when_there_are_wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(host, "cuda_library_dirs", lambda paths=None: [])
    assert host.child_env({"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(host, "cuda_library_dirs", lambda paths=None: ["/w"])
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/lib/x")
    assert host.child_env({})["LD_LIBRARY_PATH"] == "/w:/usr/lib/x"


@pytest.mark.parametrize(
    ("providers", "gpu", "requested", "mode"),
    [
        (["CUDAExecutionProvider", "CPUExecutionProvider"], True, "auto", "gpu"),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], True, "cpu", "cpu"),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], False, "auto", "cpu"),
        (["CPUExecutionProvider"], True, "auto", "cpu"),
        (["CPUExecutionProvider"], True, "gpu", None),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], False, "gpu", None),
    ],
)
def test_the_mode_needs_both_the_cuda_provider_and_a_gpu(monkeypatch: pytest.MonkeyPatch, providers, gpu, requested, mode) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    monkeypatch.setattr(host, "gpu_visible", lambda: gpu)
    chosen, why = host.choose_mode(requested)
    assert chosen == mode
    if mode is None:
        assert "asked for" in why


def test_tensorrt_is_usable_only_where_libnvinfer_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert host.tensorrt_status(["CPUExecutionProvider"]) == (False, "this onnxruntime build has no TensorRT provider")
    monkeypatch.setattr(host, "cuda_library_dirs", lambda paths=None: [])

    def no_library(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(host.ctypes, "CDLL", no_library)
    usable, why = host.tensorrt_status(["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert not usable and "libnvinfer" in why


def test_providers_as_the_server_plans_them() -> None:
    assert host.providers_for("CPUExecutionProvider") == ["CPUExecutionProvider"]
    assert host.providers_for("CUDAExecutionProvider") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert host.providers_for("TensorrtExecutionProvider") == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_the_preflight_starts_a_session_in_a_bare_process() -> None:
    result = host.preflight(["CPUExecutionProvider"], host.child_env())
    assert result["active"] == ["CPUExecutionProvider"] and result["ran"] is True
    assert "CPUExecutionProvider" in result["available"]


def test_the_facts_name_versions_and_providers() -> None:
    facts = host.describe("cpu", "because")
    assert facts["mode"] == "cpu" and facts["onnxruntime"] and facts["torch"] and facts["cpu_count"]
    assert "CPUExecutionProvider" in facts["onnxruntime_providers"]
