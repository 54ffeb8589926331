"""Capped exponential backoff with jitter: the one retry-delay rule of every retry loop.

Retry `n` (0 for the first) waits a uniform time in [ceiling/2, ceiling], where
ceiling = min(cap, base * 2**n): the wait doubles, never exceeds `cap`, and the jitter keeps
workers that met the same outage from retrying in step. Pure standard library, so both
environments (ops and stream worker) import it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2.0 ** 1024 overflows a float; past this exponent every ceiling is the cap anyway.
_MAX_EXPONENT = 1023


def max_delay(retry: int, base: float, cap: float) -> float:
    """The longest wait before retry `retry` (0 for the first): base * 2**retry, at most `cap`."""
    if retry < 0:
        raise ValueError(f"retry must be 0 or more (0 is the first retry), got {retry}")
    return min(cap, base * 2.0 ** min(retry, _MAX_EXPONENT))


def retry_delay(retry: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry `retry`: uniform between half of `max_delay(...)` and all of it."""
    top = max_delay(retry, base, cap)
    return top / 2 + (rng or random).random() * top / 2


@dataclass
class Backoff:
    """The delays of one retry loop: each `next()` is the following retry's; `retries` counts them."""

    base: float = 0.1
    cap: float = 5.0
    rng: random.Random | None = None
    retries: int = 0

    def next(self) -> float:
        wait = retry_delay(self.retries, self.base, self.cap, self.rng)
        self.retries += 1
        return wait
