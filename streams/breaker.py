"""Circuit breaker: open after N failures within a window, one half-open probe after a pause, close on success.

One breaker per dependency (each LLM backend, each action adapter) per worker process. Callers ask
`allow()` before a call and report `success()` or `failure()` after it; while open, calls are refused
at once, so a dead dependency costs nothing and nothing waits on it. `snapshot()` is what metrics and
`triage status` show. Time comes from an injectable clock so tests need no sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from triage.errors import TriageError

State = Literal["closed", "open", "half_open"]
STATE_CODES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


class BreakerOpen(TriageError, RuntimeError):
    """The breaker refused the call; the message names the dependency and when it will be retried."""


@dataclass(frozen=True)
class BreakerSnapshot:
    name: str
    state: State
    recent_failures: int
    opened_at: float | None
    retry_in_s: float | None
    times_opened: int
    last_error: str | None


class CircuitBreaker:
    """Thread-safe; `failures` within `window_s` open it; after `open_s` one probe is let through."""

    def __init__(
        self,
        name: str,
        failures: int = 5,
        window_s: float = 30.0,
        open_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or window_s <= 0 or open_s <= 0:
            raise ValueError(f"breaker {name}: failures >= 1, window_s > 0 and open_s > 0 are required")
        self.name, self.threshold, self.window_s, self.open_s, self.clock = name, failures, window_s, open_s, clock
        self._failures: deque[float] = deque()
        self._state: State = "closed"
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._times_opened = 0
        self._last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        with self._lock:
            return self._current()

    def _current(self) -> State:
        if self._state == "open" and self._opened_at is not None and self.clock() - self._opened_at >= self.open_s:
            self._state = "half_open"
            self._probe_in_flight = False
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe at a time is allowed."""
        with self._lock:
            state = self._current()
            if state == "closed":
                return True
            if state == "half_open" and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def check(self) -> None:
        """`allow()` or raise BreakerOpen with the reason."""
        if not self.allow():
            snap = self.snapshot()
            wait = f"; next probe in {snap.retry_in_s:.1f}s" if snap.retry_in_s is not None else ""
            raise BreakerOpen(f"circuit breaker {self.name} is {snap.state} (last error: {snap.last_error}){wait}")

    def release(self) -> None:
        """The probe ended without a verdict (cancelled): let the next call probe instead."""
        with self._lock:
            self._probe_in_flight = False

    def success(self) -> None:
        with self._lock:
            self._state = "closed"
            self._opened_at = None
            self._probe_in_flight = False
            self._failures.clear()

    def failure(self, error: str = "") -> None:
        with self._lock:
            now = self.clock()
            self._last_error = error[:300] or self._last_error
            state = self._current()
            if state == "half_open":
                self._open(now)
                return
            if state == "open":
                return
            self._failures.append(now)
            while self._failures and now - self._failures[0] > self.window_s:
                self._failures.popleft()
            if len(self._failures) >= self.threshold:
                self._open(now)

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._probe_in_flight = False
        self._failures.clear()
        self._times_opened += 1

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            state = self._current()
            now = self.clock()
            recent = sum(1 for t in self._failures if now - t <= self.window_s)
            retry = None
            if state == "open" and self._opened_at is not None:
                retry = max(0.0, self.open_s - (now - self._opened_at))
            return BreakerSnapshot(
                self.name, state, recent, self._opened_at, retry, self._times_opened, self._last_error
            )


class BreakerBoard:
    """The breakers of one worker, by name, built with the same thresholds."""

    def __init__(
        self, failures: int, window_s: float, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures, self.window_s, self.open_s, self.clock = failures, window_s, open_s, clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CircuitBreaker:
        with self._lock:
            if name not in self._breakers:
                self._breakers[name] = CircuitBreaker(name, self.failures, self.window_s, self.open_s, self.clock)
            return self._breakers[name]

    def snapshots(self) -> list[BreakerSnapshot]:
        with self._lock:
            breakers = list(self._breakers.values())
        return [b.snapshot() for b in breakers]
