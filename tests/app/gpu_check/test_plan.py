"""The plans cover the grid the issue asks for, and time is shared out as the run goes."""

from __future__ import annotations

import pytest

from app.gpu_check import plan as p


def test_the_gpu_plan_covers_the_issue_grid() -> None:
    gpu = p.gpu_plan()
    assert gpu.provider == "CUDAExecutionProvider"
    assert gpu.seqs == (32, 128, 512)
    assert gpu.batches == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert gpu.concurrencies == (1, 4, 16, 64, 256)
    assert gpu.variants == ("fp32", "fp16", "fp32-unfused", "fp16-packed")
    assert gpu.cuda_graph and not p.cpu_plan().cuda_graph
    assert [model.name for model in gpu.models] == ["distilbert-base-shaped-mlm", "all-minilm-l6-v2-shaped"]
    assert gpu.budget_s <= 8 * 60
    assert all(model.max_length >= gpu.longest for model in gpu.models)


def test_shapes_are_the_real_models() -> None:
    assert p.DISTILBERT_BASE.config | {"vocab": p.VOCAB_SIZE} == {
        "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512, "vocab": 30522,
    }
    assert (p.MINILM_L6.config["hidden_size"], p.MINILM_L6.config["num_hidden_layers"], p.MINILM_L6.config["intermediate_size"]) == (384, 6, 1536)


def test_the_cpu_plan_is_tiny_and_the_real_shapes_can_run_on_the_cpu() -> None:
    cpu = p.plan_for("cpu")
    assert cpu.provider == "CPUExecutionProvider" and cpu.budget_s < 60
    assert all(model.config.get("dim", model.config.get("hidden_size")) <= 64 for model in cpu.models)
    baseline = p.plan_for("cpu", real_shapes=True, budget_s=100)
    assert baseline.provider == "CPUExecutionProvider" and baseline.models == p.gpu_plan().models
    assert baseline.budget_s == 100
    assert p.plan_for("gpu").provider == "CUDAExecutionProvider"


def test_fair_share_gives_each_part_an_equal_part_of_what_is_left() -> None:
    assert p.fair_share(100.0, 4, at=20.0) == pytest.approx(40.0)
    assert p.fair_share(100.0, 1, at=20.0) == pytest.approx(100.0)
    # Time a part left unused goes to the ones after it.
    assert p.fair_share(100.0, 2, at=30.0) == pytest.approx(65.0)
    assert p.fair_share(100.0, 3, at=120.0) == pytest.approx(120.0)  # past the end: nothing
    assert p.fair_share(100.0, 0, at=0.0) == pytest.approx(100.0)


def test_the_packed_graph_runs_on_cuda_only_and_the_unfused_one_is_served_by_tensorrt() -> None:
    assert p.runs_on("fp16-packed", "CUDAExecutionProvider") and not p.runs_on("fp16-packed", "CPUExecutionProvider")
    assert p.runs_on("fp32-unfused", "CPUExecutionProvider")
    exported = ["fp32", "fp16", "fp32-unfused", "fp16-packed"]
    assert p.served_variants(p.gpu_plan(), exported) == ["fp32", "fp16", "fp16-packed"]
    assert p.served_variants(p.cpu_plan(), exported) == ["fp32", "fp16"]
