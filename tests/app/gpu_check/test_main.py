"""Which servers the GPU mode starts, and what each must show."""

from __future__ import annotations

from app.gpu_check import __main__ as check
from app.gpu_check.plan import cpu_plan, gpu_plan


def test_the_gpu_mode_serves_each_variant_on_cuda_with_io_binding_and_lets_tensorrt_choose_where_it_loads() -> None:
    runs = check.server_runs(gpu_plan(), ["fp32", "fp16", "fp32-unfused", "fp16-packed"], tensorrt=True)
    assert [(r.label, r.provider, r.variant, r.io_binding, r.expected_variant) for r in runs] == [
        ("fp32 on CUDAExecutionProvider", "CUDAExecutionProvider", "fp32", True, None),
        ("fp16 on CUDAExecutionProvider", "CUDAExecutionProvider", "fp16", True, None),
        ("fp16-packed on CUDAExecutionProvider", "CUDAExecutionProvider", "fp16-packed", True, None),
        ("server's choice on TensorRT (fp32-unfused)", "TensorrtExecutionProvider", None, False, "fp32-unfused"),
    ]
    assert runs[3].providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert [r.label for r in check.server_runs(gpu_plan(), ["fp16"], tensorrt=False)] == ["fp16 on CUDAExecutionProvider"]
    assert check.server_runs(gpu_plan(), ["fp32"], tensorrt=True)[-1].expected_variant == "fp32"


def test_the_cpu_mode_never_starts_tensorrt_nor_the_packed_graph() -> None:
    runs = check.server_runs(cpu_plan(), ["fp32", "fp16", "fp32-unfused", "fp16-packed"], tensorrt=True)
    assert [(r.variant, r.provider, r.io_binding) for r in runs] == [
        ("fp32", "CPUExecutionProvider", False), ("fp16", "CPUExecutionProvider", False),
    ]
