"""Circuit breaker states on a fake clock: closed -> open -> half-open (one probe) -> closed or open again."""

from __future__ import annotations

import pytest

from streams.breaker import BreakerBoard, BreakerOpen, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_failures_in_window_and_refuses() -> None:
    clock = Clock()
    b = CircuitBreaker("llm", failures=3, window_s=10, open_s=5, clock=clock)
    b.failure("500")
    b.failure("500")
    assert b.state == "closed" and b.allow()
    b.failure("boom")
    assert b.state == "open"
    assert not b.allow()
    with pytest.raises(BreakerOpen, match="llm is open.*boom"):
        b.check()
    snap = b.snapshot()
    assert snap.times_opened == 1 and snap.retry_in_s == pytest.approx(5.0)


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    b = CircuitBreaker("hook", failures=3, window_s=10, open_s=5, clock=clock)
    b.failure()
    b.failure()
    clock.now += 11
    b.failure()
    assert b.state == "closed"
    assert b.snapshot().recent_failures == 1


def test_half_open_allows_one_probe_and_success_closes() -> None:
    clock = Clock()
    b = CircuitBreaker("llm", failures=1, window_s=10, open_s=5, clock=clock)
    b.failure("x")
    assert b.state == "open"
    clock.now += 5
    assert b.state == "half_open"
    assert b.allow()
    assert not b.allow(), "only one probe at a time while half-open"
    b.success()
    assert b.state == "closed" and b.allow()


def test_half_open_probe_failure_reopens() -> None:
    clock = Clock()
    b = CircuitBreaker("llm", failures=2, window_s=10, open_s=5, clock=clock)
    b.failure()
    b.failure()
    clock.now += 6
    assert b.allow()
    b.failure("still down")
    assert b.state == "open"
    assert b.snapshot().times_opened == 2
    assert not b.allow()


def test_success_resets_counted_failures() -> None:
    b = CircuitBreaker("x", failures=2, window_s=10, open_s=5, clock=Clock())
    b.failure()
    b.success()
    b.failure()
    assert b.state == "closed"


def test_board_shares_thresholds_and_reports_all() -> None:
    board = BreakerBoard(failures=1, window_s=1, open_s=1, clock=Clock())
    board.get("a").failure()
    assert board.get("a") is board.get("a")
    states = {s.name: s.state for s in board.snapshots()}
    assert states == {"a": "open"}
    with pytest.raises(ValueError, match="failures >= 1"):
        CircuitBreaker("bad", failures=0)


def test_a_probe_without_verdict_is_released() -> None:
    clock = Clock()
    b = CircuitBreaker("llm", failures=1, window_s=10, open_s=5, clock=clock)
    b.failure()
    clock.now += 5
    assert b.allow() and not b.allow()
    b.release()
    assert b.state == "half_open" and b.allow()
