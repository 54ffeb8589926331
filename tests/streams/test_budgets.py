"""Budgets on the real Postgres: atomic check-and-spend per hour and day, and no overspend under 2 workers."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from streams.budgets import BudgetExceeded, Windows, estimate_tokens, price, reserve, settle, usage, usd
from triage.settings import ModelPrice, WorkflowBudget

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _connect(url: str) -> psycopg.AsyncConnection:  # type: ignore[type-arg]
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


def test_reserve_until_exhausted_then_refuse_with_reason(db_url: str) -> None:
    limits = WorkflowBudget(hour_tokens=100, hour_usd=1.0, day_tokens=1000, day_usd=10.0)

    async def go() -> None:
        conn = await _connect(db_url)
        async with conn:
            for _ in range(4):
                await reserve(conn, "draft_reply", limits, 25, Decimal("0.1"), now=NOW)
            with pytest.raises(BudgetExceeded, match=r"hour tokens 100\+1 > 100"):
                await reserve(conn, "draft_reply", limits, 1, Decimal("0"), now=NOW)
            u = await usage(conn, "draft_reply", now=NOW)
            assert u["hour"]["tokens_used"] == 100 and u["day"]["tokens_used"] == 100
            assert u["hour"]["cost_used_usd"] == pytest.approx(0.4)
            # the next hour has its own window, the day keeps counting
            later = NOW.replace(hour=10)
            await reserve(conn, "draft_reply", limits, 10, Decimal("0"), now=later)
            u = await usage(conn, "draft_reply", now=later)
            assert u["hour"]["tokens_used"] == 10 and u["day"]["tokens_used"] == 110

    run(go())


def test_day_exhausted_rolls_back_the_hour_too(db_url: str) -> None:
    limits = WorkflowBudget(hour_tokens=1000, hour_usd=100.0, day_tokens=1000, day_usd=0.5)

    async def go() -> None:
        conn = await _connect(db_url)
        async with conn:
            await reserve(conn, "w", limits, 10, Decimal("0.4"), now=NOW)
            with pytest.raises(BudgetExceeded, match=r"day cost"):
                await reserve(conn, "w", limits, 10, Decimal("0.2"), now=NOW)
            u = await usage(conn, "w", now=NOW)
            assert u["hour"]["tokens_used"] == 10, "a refused reservation must not spend the hour either"
            assert u["hour"]["cost_used_usd"] == pytest.approx(0.4)

    run(go())


def test_settle_gives_back_unused_and_clamps_overrun(db_url: str) -> None:
    limits = WorkflowBudget(hour_tokens=100, hour_usd=1.0, day_tokens=100, day_usd=1.0)

    async def go() -> None:
        conn = await _connect(db_url)
        async with conn:
            r = await reserve(conn, "w", limits, 80, Decimal("0.8"), now=NOW)
            await settle(conn, r, 30, Decimal("0.3"))
            u = await usage(conn, "w", now=NOW)
            assert u["hour"]["tokens_used"] == 30 and u["hour"]["cost_used_usd"] == pytest.approx(0.3)
            r2 = await reserve(conn, "w", limits, 60, Decimal("0.1"), now=NOW)
            await settle(conn, r2, 500, Decimal("0.1"))
            u = await usage(conn, "w", now=NOW)
            assert u["hour"]["tokens_used"] == 100, "an overrun is recorded up to the limit, never past it"

    run(go())


def test_two_concurrent_workers_never_overspend(db_url: str) -> None:
    limits = WorkflowBudget(hour_tokens=5_000, hour_usd=2.0, day_tokens=5_000, day_usd=2.0)
    granted: dict[int, list[tuple[int, Decimal]]] = {0: [], 1: []}
    refused = [0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(i: int) -> None:
        async def go() -> None:
            rng = random.Random(i)
            conn = await _connect(db_url)
            async with conn:
                start.wait()
                while refused[i] < 20:
                    t, c = rng.randint(1, 60), usd(rng.uniform(0, 0.03))
                    try:
                        await reserve(conn, "race", limits, t, c, now=NOW)
                        granted[i].append((t, c))
                    except BudgetExceeded:
                        refused[i] += 1

        try:
            asyncio.run(go())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    assert granted[0] and granted[1], "both workers must have spent something (the race happened)"
    total_t = sum(t for g in granted.values() for t, _ in g)
    total_c = sum((c for g in granted.values() for _, c in g), Decimal(0))

    async def read() -> dict[str, dict[str, float]]:
        conn = await _connect(db_url)
        async with conn:
            return await usage(conn, "race", now=NOW)

    u = run(read())
    for period in ("hour", "day"):
        assert u[period]["tokens_used"] == total_t, "the table and the granted reservations must agree"
        assert u[period]["cost_used_usd"] == pytest.approx(float(total_c))
    assert total_t <= limits.hour_tokens and total_c <= Decimal("2.0")
    # exhausted for real: close to one of the limits
    assert total_t > limits.hour_tokens - 60 or total_c > Decimal("2.0") - Decimal("0.03")


def test_price_table_and_estimates() -> None:
    prices = {"m": ModelPrice(input_per_mtok=3.0, output_per_mtok=15.0)}
    assert price(prices, "m", 1_000_000, 0) == Decimal("3")
    assert price(prices, "m", 1, 1) == Decimal("0.000018")
    assert price(prices, "m", 1, 0) == Decimal("0.000003")
    with pytest.raises(ValueError, match="no entry in TRIAGE_LLM_PRICES"):
        price(prices, "other", 1, 1)
    assert estimate_tokens("x" * 300) == 116
    w = Windows.at(NOW)
    assert w.hour == NOW.replace(minute=0) and w.day == NOW.replace(hour=0, minute=0)
