"""Which raw sessions and servers the GPU mode runs, and what each must show."""

from __future__ import annotations

from pathlib import Path

from app.gpu_check import __main__ as check
from app.gpu_check.plan import DISTILBERT_BASE, MINILM_L6, TINY_ENCODER, TINY_MLM, cpu_plan, gpu_plan


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


ALL = ["fp32", "fp16", "fp32-unfused", "fp16-packed"]


def test_the_gpu_mode_measures_the_packed_graph_and_cuda_graphs_on_the_encoder() -> None:
    built = [check.Built(spec, Path(spec.name), Path(spec.name), ALL) for spec in (DISTILBERT_BASE, MINILM_L6)]
    jobs = [(item.spec.name, variant) for item, variant in check.raw_jobs(gpu_plan(), built)]
    assert jobs == [
        (DISTILBERT_BASE.name, "fp32"), (DISTILBERT_BASE.name, "fp16"), (DISTILBERT_BASE.name, "fp16-packed"),
        (MINILM_L6.name, "fp32"), (MINILM_L6.name, "fp16"), (MINILM_L6.name, "fp16-packed"),
        (MINILM_L6.name, "fp16+cuda-graph"),  # fill-mask outputs vary in shape: no CUDA graph for the MLM
    ]


def test_the_cpu_mode_measures_what_the_cpu_serves() -> None:
    built = [check.Built(spec, Path(spec.name), Path(spec.name), ALL) for spec in (TINY_MLM, TINY_ENCODER)]
    jobs = [(item.spec.name, variant) for item, variant in check.raw_jobs(cpu_plan(), built)]
    assert jobs == [(TINY_MLM.name, "fp32"), (TINY_MLM.name, "fp16"), (TINY_ENCODER.name, "fp32"), (TINY_ENCODER.name, "fp16")]
