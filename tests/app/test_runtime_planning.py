"""A runtime calibrates its batch cost model at warm-up, plans with it, reports it in /info, and runs
as many batches at once as its inference workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.backend import OnnxBackend, TokenBatch, TokenItem, Wants
from app.model_config import ModelOptions
from app.providers import ShapeLimits
from app.runtime import inference_workers
from app.server import create_app
from app.settings import Settings
from model_export.manifest import read_manifest
from tests.app.conftest import FAKE_HIDDEN, serving
from tests.app.fakes import FakeBackend, factory


def fake(**overrides: object) -> FakeBackend:
    options: dict[str, object] = dict(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    options.update(overrides)
    return FakeBackend(**options)  # type: ignore[arg-type]


def test_info_reports_the_cost_model_calibrated_at_warm_up(fake_model_dir: Path) -> None:
    with serving(create_app(Settings(model_dir=fake_model_dir), factory(fake()))) as client:
        model = client.get("/info").json()["models"][0]
    cost = model["cost_model"]
    assert cost["source"] == "calibrated" and cost["repeats"] >= 1 and len(cost["shapes"]) >= 4
    assert min(cost["overhead_ms"], cost["per_token_us"], cost["per_token_length_ns"]) >= 0
    assert model["inference_workers"] == 1  # the fake's provider is not CPU: one batch at a time


def test_without_warm_up_the_default_cost_model_is_reported(fake_model_dir: Path) -> None:
    with serving(create_app(Settings(model_dir=fake_model_dir, warmup=False), factory(fake()))) as client:
        assert client.get("/info").json()["cost_model"]["source"] == "default"


def test_a_padding_free_backend_has_no_cost_model(fake_model_dir: Path) -> None:
    backend = fake(is_padded=False)
    with serving(create_app(Settings(model_dir=fake_model_dir), factory(backend))) as client:
        assert client.get("/info").json()["cost_model"] is None
        assert len(backend.batches) <= 2  # the warm-up shapes only: nothing to calibrate


def test_inference_workers_default_by_provider_and_follow_the_option() -> None:
    assert inference_workers(ModelOptions(), ["CPUExecutionProvider"]) == 2
    assert inference_workers(ModelOptions(), ["CUDAExecutionProvider", "CPUExecutionProvider"]) == 1
    assert inference_workers(ModelOptions(), ["TensorrtExecutionProvider"]) == 1
    assert inference_workers(ModelOptions(inference_workers=3), ["CUDAExecutionProvider"]) == 3


def test_concurrent_runs_on_one_session_give_the_answers_of_runs_one_at_a_time(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    manifest = read_manifest(tiny_mlm_model_dir)
    backend = OnnxBackend(
        tiny_mlm_model_dir, manifest, ModelOptions(providers=["cpu"]), ShapeLimits(8, 256, manifest.max_length), tmp_path
    )
    options = backend._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # the default: no spinning
    rng = np.random.default_rng(0)
    batches = [
        TokenBatch.of([TokenItem(rng.integers(1000, 2000, int(length)), Wants()) for length in rng.integers(3, 30, 4)])
        for _ in range(16)
    ]
    alone = [backend.run(batch) for batch in batches]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(backend.run, batches))
    for one, other in zip(alone, together, strict=True):
        np.testing.assert_allclose(
            np.stack([item.embedding for item in one]), np.stack([item.embedding for item in other]), rtol=1e-5, atol=1e-6
        )
