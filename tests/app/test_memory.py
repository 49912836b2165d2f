"""Memory follows the configuration, not the request: the heaviest valid fill-mask request never holds
more vocabulary-wide logit rows than one batch's `max_batch_mask_rows` (allocations measured)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from app.server import create_app
from app.settings import Settings
from tests.app.conftest import FAKE_HIDDEN, serving
from tests.app.fakes import FakeBackend, factory

VOCAB = 30522
ROW_BYTES = VOCAB * 4  # one float32 logit row over the vocabulary


def test_the_heaviest_fill_mask_request_stays_within_the_mask_row_bound(fake_model_dir: Path) -> None:
    rows_per_batch = 128
    settings = Settings(
        model_dir=[fake_model_dir], max_batch_mask_rows=rows_per_batch, max_top_k=100, max_inputs_per_request=64,
        max_wait_ms=0,
    )
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=VOCAB, mask_id=103)
    # 64 inputs of 30 masks (the fake model's 32-token limit): 1,920 rows, 234 MB if held at once.
    masks_per_input = 30
    text = " ".join(["[MASK]"] * masks_per_input)
    top_k = (64 * 100) // (64 * masks_per_input)  # the largest top_k the candidate bound admits
    with serving(create_app(settings, factory(backend))) as client:
        tracemalloc.start()
        try:
            response = client.post("/fill-mask", json={"inputs": [text] * 64, "parameters": {"top_k": top_k}})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200, response.text
    answers = response.json()
    assert len(answers) == 64 and all(len(masks) == masks_per_input for masks in answers)
    all_rows = 64 * masks_per_input * ROW_BYTES
    bound = 3 * rows_per_batch * ROW_BYTES  # a batch's rows, their softmax, and slack for the answer
    assert peak < bound < all_rows / 2, (peak / 2**20, bound / 2**20)


def test_an_input_with_more_masks_than_a_batch_takes_is_refused_with_what_to_change(fake_model_dir: Path) -> None:
    settings = Settings(model_dir=[fake_model_dir], max_batch_mask_rows=8)
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=VOCAB, mask_id=103)
    with serving(create_app(settings, factory(backend))) as client:
        response = client.post("/fill-mask", json={"inputs": ["a [MASK]", " ".join(["[MASK]"] * 9)]})
        assert response.status_code == 422
        assert response.json()["error"] == (
            "input 1 has 9 mask tokens; this model takes at most 8 per input (max_batch_mask_rows); use fewer masks"
        )
        assert client.post("/fill-mask", json={"inputs": " ".join(["[MASK]"] * 8)}).status_code == 200
