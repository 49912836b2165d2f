"""Start-up refusals and failure paths, with a FakeBackend (fast, deterministic, can be made to fail)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI, Request
from pydantic import SecretStr

from app.backend import TokenBatch
from app.errors import InvalidInput, install_error_handlers
from app.metrics import Metrics
from app.server import RequestGuard, StartupError, create_app
from app.settings import Settings
from tests.app.conftest import FAKE_HIDDEN, serving
from tests.app.fakes import FakeBackend, factory


def fake(**overrides: object) -> FakeBackend:
    options: dict[str, object] = dict(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    options.update(overrides)
    return FakeBackend(**options)  # type: ignore[arg-type]


def settings_for(model_dir: Path, **overrides: object) -> Settings:
    return Settings(model_dir=model_dir, max_wait_ms=0, **overrides)  # type: ignore[arg-type]


def test_fake_backend_answers_through_the_whole_path(fake_model_dir: Path) -> None:
    backend = fake()
    with serving(create_app(settings_for(fake_model_dir), factory(backend))) as client:
        vectors = client.post("/embed", json={"inputs": ["a b c", "hello"], "normalize": False}).json()
        ids = np.array([101, 1037, 1038, 1039, 102])  # [CLS] a b c [SEP]
        np.testing.assert_allclose(vectors[0], backend.embedding(ids), rtol=1e-6)
        answer = client.post("/fill-mask", json={"inputs": "a [MASK] c", "parameters": {"top_k": 2}}).json()
        assert [candidate["token"] for candidate in answer] == list(
            np.argsort(-backend.logits(np.array([101, 1037, 103, 1039, 102]), 2), kind="stable")[:2]
        )


def test_warm_up_runs_the_largest_configured_shapes_before_ready(fake_model_dir: Path) -> None:
    backend = fake()
    settings = settings_for(fake_model_dir, max_batch_tokens=256, max_batch_size=16)
    with serving(create_app(settings, factory(backend))):
        seen = [(len(batch), batch[0]) for batch in backend.batches]
    assert seen[:2] == [(8, 32), (16, 16)]  # longest inputs (32 = max length) and the widest batch
    assert all(size * length <= 256 for size, length in seen[2:])  # then the cost model's calibration shapes


def test_not_ready_until_warm_up_finishes(fake_model_dir: Path) -> None:
    gate = threading.Event()
    backend = fake()
    original = backend.run
    backend.run = lambda batch: (gate.wait(10), original(batch))[1]  # type: ignore[method-assign]
    with serving(create_app(settings_for(fake_model_dir), factory(backend)), ready=False) as client:
        assert client.get("/ready").status_code == 503
        assert client.get("/ready").json() == {"ready": False, "reason": "warming up", "models": {"fake-model": "warming up"}}
        assert client.get("/health").status_code == 200
        gate.set()
        from tests.app.conftest import wait_ready

        wait_ready(client, 5)


def test_a_failing_batch_is_a_generic_backend_error(fake_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = fake(fail_if=lambda batch: bool((batch.ids == 7592).any()))  # "hello"
    with serving(create_app(settings_for(fake_model_dir), factory(backend))) as client:
        response = client.post("/embed", json={"inputs": "hello"})
        assert response.status_code == 500
        assert response.json() == {"error": "inference failed", "error_type": "backend"}
        assert "fake backend failure" in caplog.text  # the cause is logged, not sent
        assert client.post("/embed", json={"inputs": "other"}).status_code == 200
        assert client.get("/ready").status_code == 200


def test_full_queue_is_429_with_retry_after(fake_model_dir: Path) -> None:
    gate, started = threading.Event(), threading.Event()
    backend = fake()

    def blocked(batch: TokenBatch):  # type: ignore[no-untyped-def]
        started.set()
        gate.wait(10)
        return FakeBackend.run(backend, batch)

    settings = settings_for(fake_model_dir, max_queue=4, max_inputs_per_request=4, retry_after_s=2, max_batch_size=1)
    with serving(create_app(settings, factory(backend))) as client:
        backend.run = blocked  # type: ignore[method-assign]
        results: list[int] = []
        first = threading.Thread(target=lambda: results.append(client.post("/embed", json={"inputs": "a"}).status_code))
        first.start()  # "a" occupies the worker
        engine = client.app.state.registry.default  # type: ignore[attr-defined]
        assert started.wait(10)
        second = threading.Thread(
            target=lambda: results.append(client.post("/embed", json={"inputs": ["b", "c", "d"]}).status_code)
        )
        second.start()
        while engine.batcher.queue_depth < 2:  # "b" is prepared as the next batch; "c", "d" wait
            threading.Event().wait(0.01)
        refused = client.post("/embed", json={"inputs": ["e", "f", "g"]})  # 2 + 3 > 4
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        assert refused.json()["error_type"] == "overloaded"
        gate.set()
        first.join()
        second.join()
        assert results == [200, 200]


def test_loop_death_turns_readiness_503(fake_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(create_app(settings_for(fake_model_dir), factory(fake()))) as client:
        batcher = client.app.state.registry.default.batcher  # type: ignore[attr-defined]

        def broken() -> list[object]:
            raise RuntimeError("bug")

        monkeypatch.setattr(batcher, "_take_batch", broken)
        response = client.post("/embed", json={"inputs": "x"})
        assert response.status_code == 503 and response.json()["error_type"] == "unhealthy"
        assert client.get("/ready").status_code == 503
        assert client.get("/ready").json()["reason"] == "the batching loop has stopped"
        assert client.get("/health").status_code == 503
        assert client.post("/embed", json={"inputs": "y"}).status_code == 503


def test_unexpected_errors_are_a_generic_500(fake_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings_for(fake_model_dir), factory(fake()))

    async def explode(request: Request) -> None:
        raise KeyError("secret-internal-detail")

    app.add_api_route("/explode", explode, methods=["GET"])
    with serving(app) as client:
        response = client.get("/explode")
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error", "error_type": "internal"}
        assert "secret-internal-detail" not in response.text
        assert "secret-internal-detail" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
def test_openai_paths_get_openai_error_bodies(fake_model_dir: Path, path: str) -> None:
    app = create_app(settings_for(fake_model_dir), factory(fake()))

    async def refuse(request: Request) -> None:
        raise InvalidInput("`dimensions` is too large")

    app.add_api_route("/probe", refuse, methods=["POST"])
    with serving(app) as client:
        response = client.post(path, json={"model": "m"})  # no `input`: a client mistake, never 5xx here
        assert response.status_code == 422
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "validation"
        assert "input" in body["error"]["message"]
        assert client.post("/probe", json={}).json() == {"error": "`dimensions` is too large", "error_type": "validation"}


def test_disconnected_clients_inputs_are_skipped(fake_model_dir: Path) -> None:
    """The engine call is cancelled when the client goes away, and the batcher never runs its inputs."""
    import asyncio

    from app.routes.common import cancel_on_disconnect

    backend = fake()
    with serving(create_app(settings_for(fake_model_dir), factory(backend))) as client:
        engine = client.app.state.registry.default  # type: ignore[attr-defined]
        backend.forget_batches()  # the warm-up's
        gate = threading.Event()
        original = backend.run
        backend.run = lambda batch: (gate.wait(10), original(batch))[1]  # type: ignore[method-assign]

        async def scenario() -> None:
            holder = asyncio.ensure_future(engine.embed(["holder"]))  # occupies the worker
            await asyncio.sleep(0.05)
            disconnected = asyncio.Event()

            async def receive() -> dict[str, str]:
                await disconnected.wait()
                return {"type": "http.disconnect"}

            request = Request({"type": "http", "method": "POST", "path": "/embed", "headers": []}, receive)
            gone = asyncio.ensure_future(cancel_on_disconnect(request, engine.embed(["never run"])))
            await asyncio.sleep(0.05)
            disconnected.set()
            with pytest.raises(Exception, match="disconnected"):
                await gone
            gate.set()
            await holder

        client.portal.call(scenario)  # type: ignore[union-attr]
        assert client.post("/embed", json={"inputs": "after"}).status_code == 200
        ran = [length for batch in backend.batches for length in batch]
        assert len(ran) == 2  # "holder" and "after"; the departed client's input never ran


def _copy(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def test_start_up_refuses_a_checksum_mismatch(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    directory = _copy(tiny_mlm_model_dir, tmp_path / "model")
    (directory / "model.fp32.onnx").write_bytes(b"tampered")
    with pytest.raises(StartupError, match="model.fp32.onnx: sha256"):
        create_app(Settings(model_dir=directory, providers=["cpu"]))


def test_start_up_refuses_a_tampered_tokenizer(fake_model_dir: Path, tmp_path: Path) -> None:
    directory = _copy(fake_model_dir, tmp_path / "model")
    (directory / "tokenizer.json").write_text("{}")
    with pytest.raises(StartupError, match="refusing to serve.*tokenizer.json: sha256"):
        create_app(settings_for(directory), factory(fake()))


def test_start_up_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="no manifest.json"):
        create_app(settings_for(tmp_path), factory(fake()))


def test_start_up_refuses_a_max_input_length_over_the_models(fake_model_dir: Path) -> None:
    with pytest.raises(StartupError, match="max_input_length 64 exceeds the model's max_length 32"):
        create_app(settings_for(fake_model_dir, max_input_length=64), factory(fake()))


def test_start_up_refuses_fill_mask_without_a_mask_token(fake_model_dir: Path, tmp_path: Path) -> None:
    directory = _copy(fake_model_dir, tmp_path / "model")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["special_tokens"]["mask"] = None
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StartupError, match="no mask token"):
        create_app(settings_for(directory), factory(fake()))


def test_cli_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "app", "--model-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "cannot start" in result.stderr and "no manifest.json" in result.stderr


def test_every_413_is_counted_once_under_its_route(fake_model_dir: Path) -> None:
    app = create_app(settings_for(fake_model_dir, max_body_bytes=100), factory(fake()))
    registry = app.state.metrics.registry

    def counted() -> tuple[float, float]:
        requests = registry.get_sample_value("distilserve_requests_total", {"route": "/embed", "status": "413", "model": ""})
        failures = registry.get_sample_value("distilserve_failures_total", {"error_type": "payload_too_large", "model": ""})
        return requests or 0.0, failures or 0.0

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
        yield b'{"inputs": "'
        yield b"x" * 200
        yield b'"}'

    with serving(app) as client:
        assert client.post("/embed", json={"inputs": "x" * 200}).status_code == 413  # refused on Content-Length
        assert counted() == (1, 1)
        assert client.post("/embed", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
        assert counted() == (2, 2)
        # A route that reads no body, or none at all, answers as it would any request.
        assert client.post("/nowhere", content=b"x" * 200).status_code == 404
        assert client.put("/embed", content=b"x" * 200).status_code == 405
        assert counted() == (2, 2)
        assert registry.get_sample_value("distilserve_requests_total", {"route": "unmatched", "status": "413", "model": ""}) is None


def test_the_key_is_checked_before_the_body_size(fake_model_dir: Path) -> None:
    app = create_app(settings_for(fake_model_dir, max_body_bytes=100, api_key=SecretStr("k")), factory(fake()))
    with serving(app) as client:
        assert client.post("/embed", json={"inputs": "x" * 200}).status_code == 401
        assert client.post("/embed", json={"inputs": "x" * 200}, headers={"Authorization": "Bearer k"}).status_code == 413


@pytest.mark.parametrize(
    ("headers", "status", "fragment"),
    [
        ({"content-type": "application/json", "content-encoding": "gzip"}, 415, "Content-Encoding gzip is not supported"),
        ({"content-type": "application/json", "content-encoding": "identity, br"}, 415, "Content-Encoding br"),
        ({"content-type": "text/plain"}, 415, "Content-Type 'text/plain' is not supported"),
        ({"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),  # curl -d without -H
        ({}, 415, "the body has no Content-Type"),
        ({"content-type": "application/json; charset=utf-8"}, 200, ""),
        ({"content-type": "application/vnd.api+json", "content-encoding": "identity"}, 200, ""),
    ],
)
def test_a_body_the_server_cannot_read_is_415(
    fake_model_dir: Path, headers: dict[str, str], status: int, fragment: str
) -> None:
    app = create_app(settings_for(fake_model_dir), factory(fake()))
    with serving(app) as client:
        for path, body in (("/embed", {"inputs": "x"}), ("/v1/embeddings", {"input": "x"})):
            # The headers decide, before the body is read: a gzip header on plain JSON is refused too.
            response = client.post(path, content=json.dumps(body).encode(), headers=headers)
            assert response.status_code == status, response.text
            if status == 415:
                message = response.json()["error"]
                assert fragment in (message["message"] if path == "/v1/embeddings" else message)
        if status == 415:
            failures = {"error_type": "unsupported_media", "model": ""}
            assert app.state.metrics.registry.get_sample_value("distilserve_failures_total", failures) == 2
            if "content-encoding" in headers:
                assert response.headers["accept-encoding"] == "identity"


def test_a_request_without_a_body_needs_no_content_type(fake_model_dir: Path) -> None:
    with serving(create_app(settings_for(fake_model_dir), factory(fake()))) as client:
        response = client.post("/embed")
        assert response.status_code == 422 and "Field required" in response.json()["error"]


def test_the_key_is_checked_before_the_media_type(fake_model_dir: Path) -> None:
    app = create_app(settings_for(fake_model_dir, api_key=SecretStr("k")), factory(fake()))
    with serving(app) as client:
        assert client.post("/embed", content=b"\x1f\x8b", headers={"content-encoding": "gzip"}).status_code == 401


# RequestGuard, called as ASGI with a receive that the test controls.


def guarded_echo(body_timeout_s: float) -> RequestGuard:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/embed")
    async def embed(request: Request) -> dict[str, str]:
        body = await request.body()
        await request.receive()  # as cancel_on_disconnect does: returns only when the client goes
        return {"body": body.decode()}

    return RequestGuard(app, max_body_bytes=1000, body_timeout_s=body_timeout_s, metrics=Metrics())


def http_scope(path: str) -> dict[str, object]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json")], "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000), "state": {},
    }


async def call(app: RequestGuard, chunks: list[tuple[float, dict[str, object]]]) -> list[dict[str, object]]:
    """Run one request whose receive() yields `chunks` (each after its delay), then waits forever."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if not chunks:
            await asyncio.Event().wait()
        delay, message = chunks.pop(0)
        await asyncio.sleep(delay)
        return message

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(http_scope("/embed"), receive, send), 5)  # type: ignore[arg-type]
    return sent


@pytest.mark.asyncio
async def test_a_body_that_does_not_arrive_in_time_is_408_and_closes() -> None:
    sent = await call(guarded_echo(0.1), [(0, {"type": "http.request", "body": b'{"in', "more_body": True})])
    start, body = sent[0], sent[1]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]  # type: ignore[operator]
    assert json.loads(body["body"]) == {"error": "the request body did not arrive within 0.1 s", "error_type": "timeout"}  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_the_body_deadline_ends_with_the_body() -> None:
    # The body is complete in time; waiting for a disconnect afterwards takes longer than the deadline.
    chunks = [
        (0.0, {"type": "http.request", "body": b"ab", "more_body": True}),
        (0.05, {"type": "http.request", "body": b"c", "more_body": False}),
        (0.2, {"type": "http.disconnect"}),
    ]
    sent = await call(guarded_echo(0.1), chunks)
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"]) == {"body": "abc"}  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_request_cancelled_at_the_shutdown_timeout_is_answered_503() -> None:
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # the body never completes
        raise AssertionError

    app = guarded_echo(body_timeout_s=60)
    request = asyncio.ensure_future(app(http_scope("/embed"), receive, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    request.cancel()  # what uvicorn does to the requests left at its graceful-shutdown timeout
    await request
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"]) == {"error": "the server is shutting down", "error_type": "unhealthy"}  # type: ignore[arg-type]
