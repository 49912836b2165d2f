"""Which servers the GPU mode starts, and what each must show."""

from __future__ import annotations

from app.gpu_check import __main__ as check
from app.gpu_check.plan import cpu_plan, gpu_plan


def test_the_gpu_mode_serves_each_variant_on_cuda_with_io_binding_and_fp32_on_tensorrt_where_it_loads() -> None:
    runs = check.server_runs(gpu_plan(), ["fp32", "fp16"], tensorrt=True)
    assert [(r.label, r.provider, r.variant, r.io_binding) for r in runs] == [
        ("fp32 on CUDAExecutionProvider", "CUDAExecutionProvider", "fp32", True),
        ("fp16 on CUDAExecutionProvider", "CUDAExecutionProvider", "fp16", True),
        ("fp32 on TensorRT", "TensorrtExecutionProvider", "fp32", False),
    ]
    assert runs[2].providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert [r.label for r in check.server_runs(gpu_plan(), ["fp16"], tensorrt=False)] == ["fp16 on CUDAExecutionProvider"]


def test_the_cpu_mode_never_starts_tensorrt() -> None:
    runs = check.server_runs(cpu_plan(), ["fp32", "fp16"], tensorrt=True)
    assert [(r.provider, r.io_binding) for r in runs] == [("CPUExecutionProvider", False)] * 2

