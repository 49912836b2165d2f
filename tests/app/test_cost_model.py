"""The batch cost model: its fit, its calibration on a backend (a fake one whose run time follows a
known formula, read from a fake clock), and the shapes it times."""

from __future__ import annotations

import numpy as np
import pytest

from app.backend import warmup_batch
from app.cost_model import calibrate, calibration_shapes, fit_cost_model
from tests.app.fakes import FakeBackend, FakeClock

OVERHEAD, PER_TOKEN, PER_TOKEN_LENGTH = 1.5e-3, 40e-6, 0.2e-6


def known_cost(rows: int, length: int) -> float:
    return OVERHEAD + PER_TOKEN * rows * length + PER_TOKEN_LENGTH * rows * length**2


def test_calibration_on_a_fake_backend_recovers_its_known_cost() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock=clock, run_time=known_cost)
    shapes = calibration_shapes(max_length=256, max_batch_size=32, max_batch_tokens=8192)
    model = calibrate(lambda rows, length: backend.run(warmup_batch(rows, length, 101, 102, 3)), shapes, timer=clock)
    assert model.overhead_s == pytest.approx(OVERHEAD, rel=1e-6)
    assert model.per_token_s == pytest.approx(PER_TOKEN, rel=1e-6)
    assert model.per_token_length_s == pytest.approx(PER_TOKEN_LENGTH, rel=1e-6)
    assert model.source == "calibrated" and model.shapes == tuple(shapes) and model.fit_error == pytest.approx(0, abs=1e-9)
    # Each shape ran once untimed, then `repeats` times.
    assert len(backend.batches) == len(shapes) * (1 + model.repeats)


def test_the_fastest_run_of_each_shape_counts() -> None:
    clock, slow_once = FakeClock(), {(4, 48)}

    def noisy(rows: int, length: int) -> float:
        if (rows, length) in slow_once:  # another process took the CPU during one timed run
            slow_once.clear()
            return known_cost(rows, length) * 5
        return known_cost(rows, length)

    backend = FakeBackend(clock=clock, run_time=noisy)
    shapes = calibration_shapes(256, 32, 8192)
    model = calibrate(lambda rows, length: backend.run(warmup_batch(rows, length, 101, 102, 3)), shapes, timer=clock)
    assert model.per_token_s == pytest.approx(PER_TOKEN, rel=1e-6)


def test_the_fit_never_goes_negative() -> None:
    # Times with no per-batch overhead and some noise: a plain least-squares fit finds a negative overhead.
    rng = np.random.default_rng(0)
    samples = [
        (rows, length, (PER_TOKEN * rows * length + PER_TOKEN_LENGTH * rows * length**2) * rng.uniform(0.9, 1.1))
        for rows in (1, 4, 16)
        for length in (16, 48, 128, 256)
    ]
    features = np.array([[1, r * n, r * n * n] for r, n, _ in samples], dtype=float)
    times = np.array([t for *_, t in samples])
    assert np.linalg.lstsq(features / times[:, None], np.ones(len(times)), rcond=None)[0][0] < 0
    overhead, per_token, per_token_length, error = fit_cost_model(samples)
    assert min(overhead, per_token, per_token_length) >= 0
    assert per_token == pytest.approx(PER_TOKEN, rel=0.2) and error < 0.1


@pytest.mark.parametrize(("max_length", "max_batch_size", "max_batch_tokens"), [(256, 32, 8192), (32, 16, 256), (512, 2, 600)])
def test_calibration_shapes_stay_within_the_batch_limits(max_length: int, max_batch_size: int, max_batch_tokens: int) -> None:
    shapes = calibration_shapes(max_length, max_batch_size, max_batch_tokens)
    assert all(rows <= max_batch_size and rows * length <= max_batch_tokens and length <= max_length for rows, length in shapes)
    # Enough distinct shapes to tell the three terms apart, and the longest input among them.
    assert len({length for _, length in shapes}) >= 2 and len({rows for rows, _ in shapes}) >= 2
    assert max(length for _, length in shapes) == min(max_length, max_batch_tokens)
