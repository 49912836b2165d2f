"""Admission before work: permits for inputs and estimated tokens, refusal by count and expected wait."""

from __future__ import annotations

import concurrent.futures
import re
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.admission import Admission, estimate_tokens
from app.errors import Overloaded
from app.server import create_app
from app.settings import Settings
from app.tokenizer import TextTokenizer
from tests.app.conftest import FAKE_HIDDEN, serving
from tests.app.fakes import FakeBackend, factory


class TestAdmission:
    def test_inputs_beyond_the_bound_are_refused_and_released_permits_make_room(self) -> None:
        admission = Admission(max_inputs=4, max_wait_s=None, retry_after_s=1)
        first = admission.admit(3, 30)
        with pytest.raises(Overloaded, match="3 of 4 inputs admitted") as refused:
            admission.admit(2, 20)
        assert refused.value.headers == {"Retry-After": "1"}
        assert (admission.inputs, admission.tokens) == (3, 30)  # a refusal takes nothing
        first.release()
        first.release()  # twice is once
        with admission.admit(4, 40):
            assert (admission.inputs, admission.tokens) == (4, 40)
        assert (admission.inputs, admission.tokens) == (0, 0)

    def test_expected_wait_over_the_bound_is_refused_with_a_matching_retry_after(self) -> None:
        admission = Admission(max_inputs=100, max_wait_s=1.0, retry_after_s=1)
        admission.observe(tokens=1000, seconds=1.0)  # 1,000 tokens/s
        admission.admit(1, 900)
        admission.admit(1, 900)  # 0.9 s ahead of it: admitted
        with pytest.raises(Overloaded, match="about 1800 ms") as refused:
            admission.admit(1, 10)  # 1.8 s ahead
        assert refused.value.headers == {"Retry-After": "1"}

        idle = Admission(max_inputs=100, max_wait_s=1.0, retry_after_s=1)
        idle.observe(tokens=1000, seconds=1.0)
        idle.admit(1, 6800)  # an idle model admits a large request
        with pytest.raises(Overloaded) as refused:
            idle.admit(1, 10)  # 6.8 s ahead, 5.8 s over the bound
        assert refused.value.headers == {"Retry-After": "6"}

    def test_batches_that_run_at_once_shorten_the_expected_wait(self) -> None:
        admission = Admission(max_inputs=100, max_wait_s=1.0, retry_after_s=1, parallelism=2)
        admission.observe(tokens=1000, seconds=1.0)  # each of two concurrent batches: 1,000 tokens/s
        admission.admit(1, 1800)
        assert admission.expected_wait_s() == pytest.approx(0.9)
        admission.admit(1, 10)  # 0.9 s ahead, not 1.8 s: admitted

    def test_an_idle_model_admits_anything_and_unmeasured_throughput_bounds_by_count_only(self) -> None:
        admission = Admission(max_inputs=100, max_wait_s=0.001, retry_after_s=1)
        admission.admit(1, 10**6)  # nothing measured yet: no wait can be estimated
        admission.observe(tokens=10, seconds=1.0)
        admission.inputs, admission.tokens = 0, 0
        admission.admit(1, 10**6)  # idle: always admitted

    def test_resize_replaces_the_estimate(self) -> None:
        admission = Admission(max_inputs=10, max_wait_s=None, retry_after_s=1)
        permit = admission.admit(2, 100)
        permit.resize(40)
        assert admission.tokens == 40
        permit.release()
        assert admission.tokens == 0

    def test_throughput_is_smoothed(self) -> None:
        admission = Admission(max_inputs=10, max_wait_s=None, retry_after_s=1)
        admission.observe(1000, 1.0)
        admission.observe(2000, 1.0)
        assert admission.tokens_per_s == pytest.approx(1200.0)
        admission.observe(0, 1.0)  # an empty or failed batch says nothing
        assert admission.tokens_per_s == pytest.approx(1200.0)

    def test_estimate_is_capped_by_the_max_length(self) -> None:
        assert estimate_tokens(["abcd" * 10, "x" * 10_000], max_length=128) == 12 + 128


def hold_batches(backend: FakeBackend) -> tuple[threading.Event, threading.Event]:
    """From now on each batch sets `started`, then waits (10 s at most) for `gate` before running."""
    started, gate = threading.Event(), threading.Event()
    original_run = backend.run

    def held(batch):  # type: ignore[no-untyped-def]
        started.set()
        gate.wait(10)
        return original_run(batch)

    backend.run = held  # type: ignore[method-assign]
    return started, gate


def test_a_full_server_refuses_before_tokenizing(fake_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the queue is full, a request is answered 429 without a single tokenizer call."""
    calls: list[int] = []
    original = TextTokenizer.encode

    def counting(self: TextTokenizer, texts, **options):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return original(self, texts, **options)

    monkeypatch.setattr(TextTokenizer, "encode", counting)
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    settings = Settings(model_dir=[fake_model_dir], max_queue=4, max_inputs_per_request=4, max_wait_ms=0)
    with serving(create_app(settings, factory(backend))) as client:
        started, gate = hold_batches(backend)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            holder = pool.submit(client.post, "/embed", json={"inputs": ["a", "b", "c", "d"]})
            assert started.wait(10)
            calls.clear()
            refused = client.post("/embed", json={"inputs": "one more"})
            assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded"
            assert calls == []  # refused before tokenization
            gate.set()
            assert holder.result(10).status_code == 200
        assert client.post("/embed", json={"inputs": "one more"}).status_code == 200


def test_metrics_report_the_expected_wait_at_each_scrape(fake_model_dir: Path) -> None:
    """distilserve_expected_wait_seconds (what autoscalers read) is the admitted tokens over the measured
    throughput when scraped, with no other request to refresh it, and drops to 0 once they are answered."""
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    app = create_app(Settings(model_dir=[fake_model_dir], max_wait_ms=0), factory(backend))

    def scrape(client: TestClient) -> dict[str, float]:
        text = client.get("/metrics").text
        return {name: float(value) for name, value in re.findall(
            r'(?m)^(distilserve_(?:expected_wait_seconds|admitted_tokens))\{model="[^"]+"\} (\S+)$', text)}

    with serving(app) as client:
        (runtime,) = app.state.registry
        started, gate = hold_batches(backend)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            holder = pool.submit(client.post, "/embed", json={"inputs": ["a b c", "d e f g h"]})
            assert started.wait(10)
            runtime.admission.tokens_per_s = 100.0  # a known throughput while the batch is held
            held = scrape(client)
            gate.set()
            assert holder.result(10).status_code == 200
        assert held["distilserve_admitted_tokens"] == 5 + 7
        assert held["distilserve_expected_wait_seconds"] == pytest.approx(12 / 100.0)
        assert scrape(client)["distilserve_expected_wait_seconds"] == 0.0


def test_accepted_requests_start_within_max_queue_ms_plus_one_batch(fake_model_dir: Path) -> None:
    """A flood against a model of known speed (2 ms per token): whatever is admitted starts within
    the queue bound plus one batch; the rest is refused at once."""
    max_queue_ms, per_token_s = 300.0, 0.002
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103, delay_per_token_s=per_token_s)
    settings = Settings(
        model_dir=[fake_model_dir], max_queue_ms=max_queue_ms, max_batch_size=8, max_wait_ms=0, warmup=False
    )
    text = "one two three four five six seven eight"  # 10 tokens
    with serving(create_app(settings, factory(backend))) as client:
        client.post("/embed", json={"inputs": text})  # the first measure of throughput
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            responses = list(pool.map(lambda _: client.post("/embed", json={"inputs": text}), range(96)))
    accepted = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code == 429]
    assert len(accepted) + len(refused) == len(responses)
    assert accepted and refused, (len(accepted), len(refused))
    one_batch_ms = 8 * 10 * per_token_s * 1000
    # The estimate is a smoothed throughput, so allow it 50% and the test machine's scheduling 100 ms.
    bound_ms = 1.5 * (max_queue_ms + one_batch_ms) + 100
    waits = [float(response.headers["x-queue-time"]) for response in accepted]
    assert max(waits) <= bound_ms, (max(waits), bound_ms)
    assert all(response.headers["retry-after"] for response in refused)
