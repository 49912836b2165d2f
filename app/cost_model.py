"""What a padded batch costs on this model and machine, measured at warm-up.

    cost(rows, padded_length) = overhead + per_token x rows x length + per_token_length x rows x length^2

The three terms are a batch's fixed cost (a session call, collating, splitting outputs), the work that
grows with padded tokens (the matrix products), and attention, which grows with the square of the
length. The planner (app/batcher.py) uses the model to choose batches that cost least per real token;
only the ratios between the terms matter to it, so a model fitted on one machine plans sensibly on it
and nowhere else: that is why it is measured at warm-up, per model, on the backend that serves.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Calibration shapes: lengths spread geometrically up to the model's longest input (the quadratic term
# needs long ones), batches from one row to a few dozen; each shape at most this many padded tokens, so
# calibrating a small CPU model takes a second or two of warm-up rather than ten.
CALIBRATION_LENGTHS = (16, 48, 128, 512)
CALIBRATION_ROWS = (1, 4, 16)
CALIBRATION_MAX_TOKENS = 512
# Each shape runs once untimed (first-run allocations), then this many times, interleaved with the other
# shapes so drift in the machine's load spreads over all of them; the fastest run counts (noise only adds).
CALIBRATION_REPEATS = 3


@dataclass(frozen=True)
class CostModel:
    overhead_s: float
    per_token_s: float
    per_token_length_s: float
    source: str  # "calibrated" at warm-up, or "default" (no measurement of this model)
    shapes: tuple[tuple[int, int], ...] = ()  # (rows, length) pairs timed
    repeats: int = 0
    fit_error: float | None = None  # root-mean-square relative error of the fit over the shapes

    def cost(self, rows: int, length: int) -> float:
        """Estimated seconds to run `rows` inputs padded to `length` tokens."""
        padded = rows * length
        return self.overhead_s + self.per_token_s * padded + self.per_token_length_s * padded * length

    def describe(self) -> dict[str, object]:
        """The model as /info shows it."""
        return {
            "overhead_ms": self.overhead_s * 1e3,
            "per_token_us": self.per_token_s * 1e6,
            "per_token_length_ns": self.per_token_length_s * 1e9,
            "source": self.source,
            "shapes": [list(shape) for shape in self.shapes],
            "repeats": self.repeats,
            "fit_error": self.fit_error,
        }


# Before calibration, or with warm-up off: all-MiniLM-L6-v2 fp32 calibrated on a 2-core x86 CPU with
# 2 intra-op threads. Only the ratios matter to the planner; they favour small batches of similar length.
DEFAULT_COST_MODEL = CostModel(overhead_s=0.6e-3, per_token_s=95e-6, per_token_length_s=0.25e-6, source="default")


def calibration_shapes(max_length: int, max_batch_size: int, max_batch_tokens: int) -> list[tuple[int, int]]:
    """(rows, length) pairs to time, within the batch limits; beyond one row, within the calibration cap."""
    lengths = sorted({min(length, max_length, max_batch_tokens) for length in CALIBRATION_LENGTHS})
    row_counts = sorted({rows for rows in CALIBRATION_ROWS if rows <= max_batch_size} | {min(max_batch_size, 4)})
    return [
        (rows, length)
        for rows, length in itertools.product(row_counts, lengths)
        if rows == 1 or (rows <= max_batch_size and rows * length <= min(max_batch_tokens, CALIBRATION_MAX_TOKENS))
    ]


def fit_cost_model(samples: Sequence[tuple[int, int, float]]) -> tuple[float, float, float, float]:
    """Non-negative least squares of (rows, length, seconds) samples on the three terms.

    Minimises relative error (each sample weighted by 1 / its time), so a one-row batch counts as
    much as a full one. Returns (overhead, per_token, per_token_length, rms relative error). Three
    unknowns: trying every subset of terms and keeping the best fit with no negative coefficient is
    the exact non-negative solution.
    """
    if not samples:
        raise ValueError("no calibration samples")
    rows = np.array([sample[0] for sample in samples], dtype=np.float64)
    lengths = np.array([sample[1] for sample in samples], dtype=np.float64)
    seconds = np.array([sample[2] for sample in samples], dtype=np.float64)
    if np.any(seconds <= 0):
        raise ValueError("calibration times must be positive")
    features = np.stack([np.ones_like(rows), rows * lengths, rows * lengths**2], axis=1)
    weighted = features / seconds[:, None]
    target = np.ones_like(seconds)
    best: tuple[float, np.ndarray] | None = None
    for size in range(1, 4):
        for columns in itertools.combinations(range(3), size):
            solution, *_ = np.linalg.lstsq(weighted[:, columns], target, rcond=None)
            if np.any(solution < 0):
                continue
            coefficients = np.zeros(3)
            coefficients[list(columns)] = solution
            error = float(np.sqrt(np.mean((weighted @ coefficients - target) ** 2)))
            if best is None or error < best[0] - 1e-12:
                best = (error, coefficients)
    assert best is not None  # a single column always has a non-negative fit (its values are positive)
    error, coefficients = best
    return float(coefficients[0]), float(coefficients[1]), float(coefficients[2]), error


def calibrate(
    run_shape: Callable[[int, int], object],
    shapes: Sequence[tuple[int, int]],
    *,
    repeats: int = CALIBRATION_REPEATS,
    timer: Callable[[], float] = time.perf_counter,
) -> CostModel:
    """Time `run_shape(rows, length)` for each shape and fit the cost model to the fastest runs."""
    if not shapes:
        raise ValueError("no calibration shapes")
    for rows, length in shapes:
        run_shape(rows, length)  # untimed: the first run of a shape allocates
    fastest = dict.fromkeys(shapes, math.inf)
    for _ in range(repeats):
        for shape in shapes:
            started = timer()
            run_shape(*shape)
            # A clock too coarse for a tiny model reads 0; the fit needs positive times.
            fastest[shape] = min(fastest[shape], max(timer() - started, 1e-9))
    overhead, per_token, per_token_length, error = fit_cost_model(
        [(rows, length, seconds) for (rows, length), seconds in fastest.items()]
    )
    return CostModel(overhead, per_token, per_token_length, "calibrated", tuple(shapes), repeats, error)
