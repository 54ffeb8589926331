"""Token and money budgets per workflow, per hour and per day, in `triage.budgets`.

Spend is reserve-then-settle: before a call, `reserve` adds the call's worst case (estimated input tokens
plus `max_tokens` of output, priced) to the hour and the day rows in ONE conditional UPDATE
(`... WHERE used + x <= limit RETURNING`). Both rows must accept or the transaction rolls back, so two
workers can never overspend between them: the row lock serialises them and Postgres re-checks the
WHERE clause on the row it finally updates. After the call, `settle` gives back what was not used. The
table's CHECK (used <= limit) is the last line of defence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import psycopg
from psycopg import errors

from triage.errors import TriageError
from triage.names import T_BUDGETS, qualified
from triage.settings import ModelPrice, WorkflowBudget

_CENTS = Decimal("0.000001")
_TABLE = qualified(T_BUDGETS)
_ENSURE = (
    f"INSERT INTO {_TABLE} (workflow, period, window_start, token_limit, cost_limit_usd) "
    "VALUES (%(w)s, 'hour', %(h)s, %(ht)s, %(hc)s), (%(w)s, 'day', %(d)s, %(dt)s, %(dc)s) "
    "ON CONFLICT (workflow, period, window_start) DO NOTHING"
)
_WINDOWS = (
    "workflow = %(w)s AND ((period = 'hour' AND window_start = %(h)s) OR (period = 'day' AND window_start = %(d)s))"
)
_SPEND = (
    f"UPDATE {_TABLE} SET tokens_used = tokens_used + %(t)s, cost_used_usd = cost_used_usd + %(c)s "
    f"WHERE {_WINDOWS} AND tokens_used + %(t)s <= token_limit AND cost_used_usd + %(c)s <= cost_limit_usd "
    "RETURNING period"
)
_SETTLE = (
    f"UPDATE {_TABLE} SET tokens_used = LEAST(token_limit, GREATEST(0, tokens_used + %(t)s)), "
    "cost_used_usd = LEAST(cost_limit_usd, GREATEST(0, cost_used_usd + %(c)s)) "
    f"WHERE {_WINDOWS}"
)
_USAGE = (
    f"SELECT period, tokens_used, token_limit, cost_used_usd, cost_limit_usd FROM {_TABLE} WHERE {_WINDOWS} "
    "ORDER BY period DESC"
)


class UnpricedModel(TriageError, ValueError):
    """A model with no entry in the price table: its spend cannot be bounded, so it is not called."""


def usd(value: float | Decimal) -> Decimal:
    """Money rounded up to the micro-dollar, so a tiny call never counts as free."""
    return Decimal(str(value)).quantize(_CENTS, rounding=ROUND_CEILING)


def price(prices: dict[str, ModelPrice], model: str, tokens_in: int, tokens_out: int) -> Decimal:
    """Cost of a call from the price table (USD per million tokens)."""
    p = prices.get(model)
    if p is None:
        raise UnpricedModel(f"model {model!r} has no entry in TRIAGE_LLM_PRICES; add its prices per million tokens")
    return usd((tokens_in * p.input_per_mtok + tokens_out * p.output_per_mtok) / 1_000_000)


def estimate_tokens(text: str) -> int:
    """A generous input-token estimate (about 3 characters per token, plus chat framing)."""
    return math.ceil(len(text) / 3) + 16


@dataclass(frozen=True)
class Windows:
    hour: datetime
    day: datetime

    @classmethod
    def at(cls, now: datetime | None = None) -> Windows:
        now = (now or datetime.now(UTC)).astimezone(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        return cls(hour=hour, day=hour.replace(hour=0))


@dataclass(frozen=True)
class Reservation:
    workflow: str
    windows: Windows
    tokens: int
    cost_usd: Decimal


class BudgetExceeded(TriageError, RuntimeError):
    """The reservation would take a window over its limit; the message says which and by how much."""


def _params(workflow: str, windows: Windows, **extra: Any) -> dict[str, Any]:
    return {"w": workflow, "h": windows.hour, "d": windows.day, **extra}


async def reserve(
    conn: psycopg.AsyncConnection[Any],
    workflow: str,
    limits: WorkflowBudget,
    tokens: int,
    cost_usd: Decimal,
    now: datetime | None = None,
) -> Reservation:
    """Spend `tokens` and `cost_usd` in the hour and day windows atomically, or raise BudgetExceeded."""
    if tokens < 0 or cost_usd < 0:
        raise ValueError("a reservation cannot be negative; use settle() to give back")
    windows = Windows.at(now)
    cost = usd(cost_usd)
    ensure = _params(
        workflow, windows, ht=limits.hour_tokens, hc=usd(limits.hour_usd), dt=limits.day_tokens, dc=usd(limits.day_usd)
    )
    for attempt in range(5):
        try:
            async with conn.transaction():
                await conn.execute(_ENSURE, ensure)
                cur = await conn.execute(_SPEND, _params(workflow, windows, t=tokens, c=cost))
                granted = {row[0] for row in await cur.fetchall()}
                if granted == {"hour", "day"}:
                    return Reservation(workflow, windows, tokens, cost)
                raise _Refused()
        except _Refused:
            break
        except (errors.DeadlockDetected, errors.SerializationFailure):
            if attempt == 4:
                raise
    raise BudgetExceeded(await _explain(conn, workflow, windows, tokens, cost))


class _Refused(TriageError):
    """Internal: roll back a half-granted reservation."""


async def _explain(
    conn: psycopg.AsyncConnection[Any], workflow: str, windows: Windows, tokens: int, cost: Decimal
) -> str:
    parts = []
    async with conn.transaction():
        cur = await conn.execute(_USAGE, _params(workflow, windows))
        for period, t_used, t_limit, c_used, c_limit in await cur.fetchall():
            if t_used + tokens > t_limit:
                parts.append(f"{period} tokens {t_used}+{tokens} > {t_limit}")
            if c_used + cost > c_limit:
                parts.append(f"{period} cost ${c_used}+${cost} > ${c_limit}")
    return f"budget of workflow {workflow} exhausted: " + ("; ".join(parts) or "limit reached")


async def settle(conn: psycopg.AsyncConnection[Any], reservation: Reservation, tokens: int, cost_usd: Decimal) -> None:
    """Replace the reservation by the actual spend (gives back the unused part; a rare overrun of the
    estimate is recorded up to the limit, never past it)."""
    dt = tokens - reservation.tokens
    dc = usd(cost_usd) - reservation.cost_usd
    if dt == 0 and dc == 0:
        return
    async with conn.transaction():
        await conn.execute(_SETTLE, _params(reservation.workflow, reservation.windows, t=dt, c=dc))


async def usage(
    conn: psycopg.AsyncConnection[Any], workflow: str, now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Current windows of a workflow: period -> used and limits (for status pages)."""
    windows = Windows.at(now)
    async with conn.transaction():
        cur = await conn.execute(_USAGE, _params(workflow, windows))
        rows = await cur.fetchall()
    return {
        r[0]: {"tokens_used": r[1], "token_limit": r[2], "cost_used_usd": float(r[3]), "cost_limit_usd": float(r[4])}
        for r in rows
    }
