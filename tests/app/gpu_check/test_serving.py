"""What /info must show, and the environment each server gets."""

from __future__ import annotations

from pathlib import Path

from app.gpu_check import plan as p
from app.gpu_check.serving import ServerRun, info_problems, server_env

CUDA_RUN = ServerRun("fp16 on CUDA", "CUDAExecutionProvider", "fp16", ["CUDAExecutionProvider", "CPUExecutionProvider"], True)


def model(model_id: str, providers: list[str], variant: str = "fp16", io_binding: bool = True) -> dict:
    return {"model_id": model_id, "providers": providers, "variant": variant, "io_binding": io_binding}


def test_everything_on_cuda_with_io_binding_passes() -> None:
    info = {"models": [model("a", ["CUDAExecutionProvider", "CPUExecutionProvider"]), model("b", ["CUDAExecutionProvider", "CPUExecutionProvider"])]}
    assert info_problems(info, CUDA_RUN, ["a", "b"]) == []


def test_a_fallback_a_wrong_variant_no_io_binding_and_a_missing_model_are_each_named() -> None:
    info = {"models": [
        model("a", ["CPUExecutionProvider"], variant="fp32", io_binding=False),
        model("b", ["CUDAExecutionProvider", "CPUExecutionProvider"], variant="fp32"),
    ]}
    assert info_problems(info, CUDA_RUN, ["a", "b", "c"]) == [
        "a: runs on ['CPUExecutionProvider'], not CUDAExecutionProvider (fell back)",
        "a: variant fp32, not fp16",
        "a: io_binding False, expected True",
        "b: variant fp32, not fp16",
        "c: not served",
    ]


def test_the_server_env_names_providers_variant_cache_and_threads(tmp_path: Path) -> None:
    env = server_env(p.gpu_plan(), CUDA_RUN, tmp_path)
    assert env["DISTILSERVE_PROVIDERS"] == "CUDAExecutionProvider,CPUExecutionProvider"
    assert env["DISTILSERVE_VARIANT"] == "fp16" and env["DISTILSERVE_CACHE_DIR"] == str(tmp_path)
    assert env["DISTILSERVE_STRICT_PROVIDERS"] == "true" and env["DISTILSERVE_INTRA_OP_THREADS"] == "0"
    assert int(env["DISTILSERVE_MAX_BATCH_TOKENS"]) >= 64 * 512
    cpu = server_env(p.cpu_plan(), ServerRun("fp32", "CPUExecutionProvider", "fp32", ["CPUExecutionProvider"], False), tmp_path)
    assert cpu["DISTILSERVE_INTRA_OP_THREADS"] == "1" and cpu["DISTILSERVE_PROVIDERS"] == "CPUExecutionProvider"


def test_a_server_that_will_not_start_is_reported_not_raised(tmp_path: Path) -> None:
    from app.gpu_check.plan import now
    from app.gpu_check.serving import ModelInput, measure_server

    run = ServerRun("fp32 on CPU", "CPUExecutionProvider", "fp32", ["CPUExecutionProvider"], False)
    model = ModelInput("missing", "embed", {32: [b"{}"]}, [b"{}"])
    with open(tmp_path / "servers.log", "w") as log:
        info, cells, mixed, skipped = measure_server(p.cpu_plan(), run, [tmp_path / "missing"], [model], {}, now() + 60, log)
    assert info == {"error": "server exited with 2"} and cells == mixed == skipped == []
    text = (tmp_path / "servers.log").read_text()
    assert text.startswith("\n===== server fp32 on CPU") and "cannot start" in text


def test_a_run_that_leaves_the_choice_to_the_server_checks_what_it_chose() -> None:
    trt = ServerRun("server's choice on TensorRT", "TensorrtExecutionProvider", None,
                    ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], False,
                    expected_variant="fp32-unfused")
    on_trt = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    info = {"models": [model("a", on_trt, variant="fp32-unfused", io_binding=False), model("b", on_trt, variant="fp32", io_binding=False)]}
    assert info_problems(info, trt, ["a", "b"]) == ["b: variant fp32, not fp32-unfused"]
