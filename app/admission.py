"""Admission before work: a request takes a permit for its inputs and estimated tokens before it is
tokenized, so a full server answers 429 at once instead of after parsing, tokenizing and queueing.

Two bounds, per model:
- inputs admitted (tokenizing, queued or running) stay within `max_queue`;
- the expected wait of a new request, the tokens admitted ahead of it divided by the measured
  throughput (a batch's rate times the batches that run at once), stays within `max_queue_ms`: what
  could not start in time is refused now rather than accepted to wait half a minute. An idle model
  admits any request that passes validation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import Overloaded

# English averages a little over four characters per BERT word piece; the estimate only has to be
# right on average (the permit is corrected to the real count once the request is tokenized).
CHARS_PER_TOKEN = 4
# How much one batch moves the throughput estimate.
THROUGHPUT_SMOOTHING = 0.2


def estimate_tokens(texts: Sequence[str], max_length: int) -> int:
    """Tokens the texts will take, special tokens included, before tokenizing them."""
    return sum(min(max_length, len(text) // CHARS_PER_TOKEN + 2) for text in texts)


@dataclass
class Permit:
    """A request's share of the queue, held from admission until its answer is ready."""

    admission: Admission
    inputs: int
    tokens: int
    released: bool = False

    def resize(self, tokens: int) -> None:
        """Replace the estimate by the real token count once the request is tokenized."""
        if not self.released:
            self.admission.tokens += tokens - self.tokens
            self.tokens = tokens

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission.inputs -= self.inputs
            self.admission.tokens -= self.tokens

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Admission:
    def __init__(self, max_inputs: int, max_wait_s: float | None, retry_after_s: int, parallelism: int = 1) -> None:
        self.max_inputs = max_inputs
        self.max_wait_s = max_wait_s
        self.retry_after_s = retry_after_s
        self.inputs = 0
        self.tokens = 0
        self.tokens_per_s: float | None = None  # of one batch while it runs
        self.parallelism = parallelism  # batches that run at once

    def admit(self, inputs: int, tokens: int) -> Permit:
        """A permit for the request, or Overloaded (429 with Retry-After) when it must not enter."""
        if self.inputs + inputs > self.max_inputs:
            self._refuse(f"queue full ({self.inputs} of {self.max_inputs} inputs admitted)", 0.0)
        wait_s = self.expected_wait_s()
        if self.max_wait_s is not None and wait_s > self.max_wait_s:
            self._refuse(
                f"the queue would take about {wait_s * 1000:.0f} ms to reach this request, over the "
                f"{self.max_wait_s * 1000:.0f} ms bound",
                wait_s - self.max_wait_s,
            )
        self.inputs += inputs
        self.tokens += tokens
        return Permit(self, inputs, tokens)

    def expected_wait_s(self) -> float:
        """Seconds until the tokens admitted so far are done, at the measured throughput (0 unmeasured)."""
        if not self.tokens or not self.tokens_per_s:
            return 0.0
        return self.tokens / (self.tokens_per_s * self.parallelism)

    def observe(self, tokens: int, seconds: float) -> None:
        """Fold one batch (real tokens and its inference time) into the throughput estimate."""
        if tokens <= 0 or seconds <= 0:
            return
        rate = tokens / seconds
        if self.tokens_per_s is None:
            self.tokens_per_s = rate
        else:
            self.tokens_per_s += THROUGHPUT_SMOOTHING * (rate - self.tokens_per_s)

    def _refuse(self, why: str, excess_s: float) -> None:
        retry_after = max(self.retry_after_s, math.ceil(excess_s))
        raise Overloaded(f"{why}; retry later", headers={"Retry-After": str(retry_after)})
