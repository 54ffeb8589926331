"""The audit sink: decisions, masked tickets, dead letters and feedback written to Postgres.

Every write is keyed (`ON CONFLICT DO NOTHING`), so a replay after a crash writes nothing new,
and each micro-batch is one transaction. When Postgres is unreachable the sink waits and retries
with capped exponential backoff until it is back: the agent awaiting it stops consuming meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from streams.actions import enqueue_batch
from streams.dead_letters import insert_dead_letters, purge_expired_async
from triage.backoff import Backoff
from triage.db import insert_from_json
from triage.names import T_DECISIONS, T_FEEDBACK, T_TICKETS, qualified
from triage.schemas import DeadLetter, Decision, Feedback, Prediction
from triage.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


@dataclass(frozen=True)
class TicketRow:
    ticket_id: str
    channel: str
    customer_ref: str | None
    subject_masked: str
    body_masked: str
    pii_counts: dict[str, int]
    metadata: dict[str, Any]
    received_at: Any


_TICKETS = insert_from_json(qualified(T_TICKETS), {
    "ticket_id": "text", "channel": "text", "customer_ref": "text", "subject_masked": "text", "body_masked": "text",
    "pii_counts": "jsonb", "metadata": "jsonb", "received_at": "timestamptz"}, conflict="ticket_id")
_DECISION_TYPES = {
    "ticket_id": "text", "channel": "text", "route": "text", "rule_id": "text", "policy_version": "text",
    "reason": "text", "model_name": "text", "model_version": "integer", "arm": "text", "intent": "text",
    "intent_confidence": "double precision", "urgency": "text", "urgency_confidence": "double precision",
    "abstained": "boolean", "prediction": "jsonb", "challenger": "jsonb", "challenger_mode": "text",
    "masked_text": "text", "pii_counts": "jsonb", "latency_ms": "jsonb", "e2e_latency_ms": "double precision",
    "inference_ms": "double precision", "received_at": "timestamptz", "decided_at": "timestamptz",
}
_DECISION_COLS = tuple(_DECISION_TYPES)
_DECISIONS = insert_from_json(qualified(T_DECISIONS), _DECISION_TYPES, conflict="ticket_id", returning="ticket_id")
_FEEDBACK_SQL = (
    f"INSERT INTO {qualified(T_FEEDBACK)} (event_id, ticket_id, kind, intent, urgency, route, reviewer, comment, "
    "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
)


def ticket_record(row: TicketRow) -> dict[str, Any]:
    """The `triage.tickets` row of a prepared ticket, as JSON for `_TICKETS`."""
    return {"ticket_id": row.ticket_id, "channel": row.channel, "customer_ref": row.customer_ref,
            "subject_masked": row.subject_masked, "body_masked": row.body_masked, "pii_counts": row.pii_counts,
            "metadata": row.metadata, "received_at": row.received_at.isoformat()}


def decision_record(d: Decision) -> dict[str, Any]:
    """The `triage.decisions` row of a decision (one column per head, predictions as jsonb), as JSON."""
    record = d.model_dump(mode="json")
    intent, urgency = d.intent, d.urgency
    record.update(
        intent=intent.label if intent else None, intent_confidence=intent.confidence if intent else None,
        urgency=urgency.label if urgency else None, urgency_confidence=urgency.confidence if urgency else None,
        abstained=any(h.abstained for h in d.prediction.heads.values()),
        e2e_latency_ms=d.latency_ms.get("e2e"), inference_ms=d.latency_ms.get("inference"),
    )
    return record


def decision_from_row(row: Sequence[Any]) -> Decision:
    """Rebuild the published decision from its stored row (to re-publish after a replay)."""
    r = dict(zip(_DECISION_COLS, row, strict=True))
    return Decision(
        ticket_id=r["ticket_id"], channel=r["channel"], route=r["route"], rule_id=r["rule_id"],
        policy_version=r["policy_version"], reason=r["reason"], model_name=r["model_name"],
        model_version=r["model_version"], arm=r["arm"], prediction=Prediction.model_validate(r["prediction"]),
        challenger=Prediction.model_validate(r["challenger"]) if r["challenger"] else None,
        challenger_mode=r["challenger_mode"], masked_text=r["masked_text"], pii_counts=r["pii_counts"],
        latency_ms=r["latency_ms"], received_at=r["received_at"], decided_at=r["decided_at"],
    )


def feedback_params(f: Feedback) -> tuple[Any, ...]:
    return (f.event_id, f.ticket_id, f.kind, f.intent, f.urgency, f.route, f.reviewer, f.comment, f.created_at)


StateHook = Callable[[str, str | None], None]


class AuditSink:
    """One async connection, reopened after failures; every public call retries until it succeeds."""

    def __init__(self, url: str, on_state: StateHook | None = None, dlq_retention: timedelta | None = None) -> None:
        self.url = url
        self.on_state = on_state or (lambda _dep, _err: None)
        # How long a dead letter's encrypted original is kept for replay (TRIAGE_DLQ_RETENTION_DAYS by default).
        self.dlq_retention = dlq_retention or timedelta(days=get_settings().dlq_retention_days)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=5, autocommit=False)
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                log.debug("closing a broken connection failed", exc_info=True)

    async def retrying(self, what: str, op: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `op` in one transaction; on a connection failure wait, reconnect and run it again."""
        backoff = Backoff()
        async with self._lock:
            while True:
                try:
                    conn = await self._connection()
                    async with conn.transaction():
                        result = await op(conn)
                    if backoff.retries:
                        log.info("postgres is back; %s succeeded after %d retries", what, backoff.retries)
                        self.on_state("postgres", None)
                    return result
                except TRANSIENT as exc:
                    await self._drop()
                    delay = backoff.next()
                    reason = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                    # One line when the outage starts, one when it ends; the retries between are debug.
                    level = logging.WARNING if backoff.retries == 1 else logging.DEBUG
                    log.log(level, "postgres unavailable during %s (%s); consumption paused, retrying with "
                            "backoff (retry %d in %.1fs)", what, reason, backoff.retries, delay)
                    self.on_state("postgres", reason)
                    await asyncio.sleep(delay)

    async def existing(self, ticket_ids: Sequence[str]) -> dict[str, Decision]:
        """Stored decisions among `ticket_ids` (duplicates or a replay)."""
        if not ticket_ids:
            return {}

        async def op(conn: psycopg.AsyncConnection[Any]) -> dict[str, Decision]:
            cur = await conn.execute(
                f"SELECT {', '.join(_DECISION_COLS)} FROM {qualified(T_DECISIONS)} WHERE ticket_id = ANY(%s)",
                (list(ticket_ids),))
            return {row[0]: decision_from_row(row) for row in await cur.fetchall()}

        return await self.retrying("duplicate check", op)

    async def write_batch(self, tickets: Sequence[TicketRow], decisions: Sequence[Decision],
                          dead: Sequence[DeadLetter]) -> set[str]:
        """One transaction for a micro-batch: masked tickets, decisions, their outbox actions, dead letters.

        Returns the ticket ids whose decision was new; the others were already stored (a replay), and
        only new decisions get outbox actions.
        """

        async def op(conn: psycopg.AsyncConnection[Any]) -> set[str]:
            if tickets:
                await conn.execute(_TICKETS, (Jsonb([ticket_record(t) for t in tickets]),))
            new: set[str] = set()
            if decisions:
                cur = await conn.execute(_DECISIONS, (Jsonb([decision_record(d) for d in decisions]),))
                new = {row[0] for row in await cur.fetchall()}
            await insert_dead_letters(conn, dead, self.dlq_retention)
            if new:
                # Outbox rows for routes that need no draft (human queue, escalation), in the same transaction.
                await enqueue_batch(conn, [d for d in decisions if d.ticket_id in new])
            return new

        return await self.retrying("audit write", op)

    async def write_feedback(self, feedback: Sequence[Feedback], dead: Sequence[DeadLetter]) -> None:
        async def op(conn: psycopg.AsyncConnection[Any]) -> None:
            if feedback:
                async with conn.cursor() as cur:
                    await cur.executemany(_FEEDBACK_SQL, [feedback_params(f) for f in feedback])
            await insert_dead_letters(conn, dead, self.dlq_retention)

        await self.retrying("feedback write", op)

    async def purge_dead_letters(self) -> int:
        """Drop the encrypted originals of dead letters past their purge date; return how many."""
        return await self.retrying("dead-letter purge", purge_expired_async)

    async def close(self) -> None:
        await self._drop()
