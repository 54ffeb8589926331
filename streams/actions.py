"""Action adapters and the outbox: a decision becomes effects exactly once in effect, never dropped.

`enqueue_actions(conn, decision, draft)` writes the decision's actions to `triage.actions` in the caller's
transaction (the audit sink's, or the drafting agent's with its llm_calls row), one row per idempotency
key `<ticket_id>:<kind>`, so a replayed decision writes nothing new. The `Dispatcher` then claims due rows
(`FOR UPDATE SKIP LOCKED` plus a lease, so several workers share the outbox), delivers them through their
adapter, and marks them delivered, or retries them with capped exponential backoff, or parks them with the
last error after `max_attempts` (or at once on an answer that can never succeed). Each adapter has its
own circuit breaker: while it is open its actions wait without spending attempts.

Adapters: `webhook` POSTs the payload with an `Idempotency-Key` header (the receiver deduplicates);
`work_queue` inserts a row that the human-queue tool reads, in the same transaction that marks the
action delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from streams.breaker import BreakerBoard
from triage.backoff import retry_delay
from triage.db import insert_from_json
from triage.errors import TriageError
from triage.labels import ROUTES
from triage.names import T_ACTIONS, T_REPLIES, T_WORK_QUEUE, qualified
from triage.pii import mask
from triage.schemas import Decision
from triage.settings import get_settings

log = logging.getLogger(__name__)
__all__ = [
    "Adapter",
    "DeliveryError",
    "Dispatcher",
    "Draft",
    "ReplyOutboxAdapter",
    "WebhookAdapter",
    "WorkQueueAdapter",
    "actions_for",
    "enqueue_actions",
    "enqueue_batch",
    "outbox_counts",
    "recent_actions",
    "reply_action",
    "reply_adapter",
    "retry_parked",
    "route_effects",
    "routes_without_effect",
]

WEBHOOK, WORK_QUEUE, REPLY_OUTBOX = "webhook", "work_queue", "reply_outbox"
# Answers that will never succeed however often they are retried (the action is parked at once).
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 415, 422})

_INSERT = insert_from_json(qualified(T_ACTIONS), {
    "action_id": "text", "ticket_id": "text", "kind": "text", "adapter": "text", "idempotency_key": "text",
    "payload": "jsonb"}, conflict="idempotency_key", returning="idempotency_key")
_CLAIM = (
    f"UPDATE {qualified(T_ACTIONS)} SET next_attempt_at = now() + make_interval(secs => %(lease)s), "
    "updated_at = now() WHERE action_id IN ("
    f"  SELECT action_id FROM {qualified(T_ACTIONS)} WHERE status IN ('pending', 'failed') "
    "  AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "RETURNING action_id, ticket_id, kind, adapter, idempotency_key, payload, attempts"
)
_DELIVERED = (
    f"UPDATE {qualified(T_ACTIONS)} SET status = 'delivered', attempts = attempts + 1, delivered_at = now(), "
    "updated_at = now(), last_error = NULL WHERE action_id = %s AND status IN ('pending', 'failed')"
)
_FAILED = (
    f"UPDATE {qualified(T_ACTIONS)} SET status = %s, attempts = attempts + 1, last_error = %s, updated_at = now(), "
    "next_attempt_at = now() + make_interval(secs => %s) WHERE action_id = %s AND status IN ('pending', 'failed')"
)
_WAIT = (
    f"UPDATE {qualified(T_ACTIONS)} SET next_attempt_at = now() + make_interval(secs => %s), updated_at = now() "
    "WHERE action_id = %s AND status IN ('pending', 'failed')"
)
_QUEUE = (
    f"INSERT INTO {qualified(T_WORK_QUEUE)} (idempotency_key, ticket_id, route, payload) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)
_REPLY = (
    f"INSERT INTO {qualified(T_REPLIES)} (idempotency_key, ticket_id, kind, channel, body, payload) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING"
)


@dataclass(frozen=True)
class Draft:
    """A reply for a ticket: the model's (kept by the guardrails) or the template's, with where it came from."""

    text: str
    source: str  # "llm" | "template"
    prompt_id: str
    prompt_version: str
    call_id: str | None = None
    reason: str | None = None


_RETRY = (
    f"UPDATE {qualified(T_ACTIONS)} SET status = 'pending', attempts = 0, next_attempt_at = now(), "
    "updated_at = now() WHERE status = 'parked' "
    "AND (%(ids)s::text[] IS NULL OR action_id = ANY(%(ids)s) OR idempotency_key = ANY(%(ids)s)) "
    "AND (%(adapter)s::text IS NULL OR adapter = %(adapter)s) RETURNING action_id"
)
_RECENT = (
    f"SELECT action_id, kind, adapter, status, attempts, last_error, updated_at FROM {qualified(T_ACTIONS)} "
    "WHERE (%(status)s::text IS NULL OR status = %(status)s) ORDER BY updated_at DESC LIMIT %(limit)s"
)
_COUNTS = f"SELECT status, count(*) FROM {qualified(T_ACTIONS)} GROUP BY status ORDER BY status"


def retry_parked(url: str, ids: Sequence[str] | None = None, adapter: str | None = None) -> list[str]:
    """Put parked actions (all, or those with the given ids / idempotency keys, or of one adapter) back to
    pending with a fresh attempt count; the dispatcher delivers them on its next poll. Returns their ids.
    The last error stays on the row until a delivery succeeds."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(_RETRY, {"ids": list(ids) if ids else None, "adapter": adapter}).fetchall()
    return [str(r[0]) for r in rows]


def recent_actions(url: str, status: str | None = None, limit: int = 20) -> list[tuple[Any, ...]]:
    """The latest actions (of one status, or all): id, kind, adapter, status, attempts, last error, updated."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return [tuple(r) for r in conn.execute(_RECENT, {"status": status, "limit": limit}).fetchall()]


def outbox_counts(url: str) -> dict[str, int]:
    """Actions per status (for `triage status` and `triage actions list`)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return {str(s): int(n) for s, n in conn.execute(_COUNTS).fetchall()}


def actions_for(route: str, has_draft: bool, webhook: bool) -> list[tuple[str, str]]:
    """(kind, adapter) pairs for a route. Replies and drafts need a draft; webhooks need a URL, and without
    one a reply goes to the reply outbox (`triage.replies`), so that no route ends in nothing."""
    pairs: list[tuple[str, str]] = []
    if route == "auto_resolve" and has_draft:
        pairs.append(("reply", reply_adapter(webhook)))
    elif route == "draft_for_review" and has_draft:
        pairs += [("review", WORK_QUEUE), ("draft", WEBHOOK)]
    elif route == "human_queue":
        pairs.append(("human", WORK_QUEUE))
    elif route == "escalate":
        pairs += [("escalate", WORK_QUEUE), ("escalate", WEBHOOK)]
    return [(k, a) for k, a in pairs if a != WEBHOOK or webhook]


def route_effects(webhook: bool) -> dict[str, list[str]]:
    """Which adapters each route's actions go to (once its draft exists): for health pages and `triage status`."""
    return {route: sorted({adapter for _, adapter in actions_for(route, True, webhook)}) for route in ROUTES}


def routes_without_effect(webhook: bool) -> list[str]:
    """Routes whose decisions would produce no action at all: each is a warning on the health pages."""
    return [route for route, adapters in route_effects(webhook).items() if not adapters]


def payload_text(decision: Decision) -> tuple[str, str | None]:
    """The decision's text masked once more (defence in depth), or withheld if masking fails."""
    try:
        return mask(decision.masked_text).text, None
    except Exception as exc:  # noqa: BLE001 - fail closed: nothing unmasked ever leaves
        log.error("masking failed on ticket %s (%s); its text is withheld", decision.ticket_id, type(exc).__name__)
        return "", f"text withheld: PII masking failed ({type(exc).__name__})"


def build_payload(
    decision: Decision, draft: Draft | None, route: str, reason: str, text: str, withheld: str | None
) -> dict[str, Any]:
    intent, urgency = decision.intent, decision.urgency
    return {
        "ticket_id": decision.ticket_id,
        "channel": decision.channel,
        "route": route,
        "decided_route": decision.route,
        "rule_id": decision.rule_id,
        "policy_version": decision.policy_version,
        "reason": reason,
        "intent": intent.label if intent else None,
        "intent_confidence": intent.confidence if intent else None,
        "urgency": urgency.label if urgency else None,
        "model": f"{decision.model_name}:{decision.model_version}",
        "masked_text": text,
        "text_withheld": withheld,
        "draft": None
        if draft is None
        else {
            "text": draft.text,
            "source": draft.source,
            "prompt_id": draft.prompt_id,
            "prompt_version": draft.prompt_version,
            "llm_call_id": draft.call_id,
            "fallback_reason": draft.reason,
        },
        "decided_at": decision.decided_at.isoformat(),
    }


def _action_rows(decision: Decision, draft: Draft | None, route: str | None, reason: str | None,
                 webhook: bool) -> list[dict[str, Any]]:
    """The outbox rows of one decision, as JSON for `_INSERT`."""
    route = route or decision.route
    reason = reason if reason is not None else decision.reason
    pairs = actions_for(route, draft is not None, webhook)
    if not pairs:
        return []
    text, withheld = payload_text(decision)
    payload = build_payload(decision, draft, route, reason, text, withheld)
    rows = []
    for kind, adapter in pairs:
        key = f"{decision.ticket_id}:{kind}:{adapter}"
        rows.append({"action_id": key, "ticket_id": decision.ticket_id, "kind": kind, "adapter": adapter,
                     "idempotency_key": key, "payload": payload})
    return rows


def reply_adapter(webhook: bool) -> str:
    """Where a reply goes: the webhook when one is configured, else the embedded reply outbox."""
    return WEBHOOK if webhook else REPLY_OUTBOX


def reply_action(ticket_id: str, payload: dict[str, Any], reply: str, adapter: str, *, reviewer: str,
                 edited: bool) -> dict[str, Any]:
    """The outbox row of a reply a person approved in the console (the queue entry's payload, their text).

    One per ticket and adapter (`<ticket>:reply:<adapter>`, the key an automatic reply would have), so a
    ticket is answered once however often the approval is replayed.
    """
    draft = dict(payload.get("draft") or {})
    source = "reviewer" if edited else (draft.get("source") or "reviewer")
    body = {**payload, "draft": {**draft, "text": reply, "source": source, "approved_by": reviewer, "edited": edited}}
    key = f"{ticket_id}:reply:{adapter}"
    return {"action_id": key, "ticket_id": ticket_id, "kind": "reply", "adapter": adapter, "idempotency_key": key,
            "payload": body}


async def _insert(conn: psycopg.AsyncConnection[Any], rows: list[dict[str, Any]]) -> list[str]:
    """Insert outbox rows in one statement; return the keys that were new."""
    if not rows:
        return []
    async with conn.cursor(row_factory=tuple_row) as cur:  # callers' connections may use dict rows
        await cur.execute(_INSERT, (Jsonb(rows),))
        return [row[0] for row in await cur.fetchall()]


async def enqueue_actions(
    conn: psycopg.AsyncConnection[Any],
    decision: Decision,
    draft: Draft | None = None,
    *,
    route: str | None = None,
    reason: str | None = None,
    webhook: bool | None = None,
) -> list[str]:
    """Write the actions of `decision` into the outbox in the caller's transaction; return the new keys.

    `route` and `reason` override the decision's (the drafting agent sends a ticket to human_queue when
    it cannot draft). Idempotent: a key already in the outbox is skipped.
    """
    if webhook is None:
        webhook = get_settings().webhook_url is not None
    return await _insert(conn, _action_rows(decision, draft, route, reason, webhook))


async def enqueue_batch(conn: psycopg.AsyncConnection[Any], decisions: Sequence[Decision]) -> list[str]:
    """`enqueue_actions` for every decision of a micro-batch in one round trip (what the audit sink calls)."""
    webhook = get_settings().webhook_url is not None
    return await _insert(conn, [row for d in decisions for row in _action_rows(d, None, None, None, webhook)])


class DeliveryError(TriageError, RuntimeError):
    """A failed delivery; `permanent` ones are parked at once instead of retried."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class OutboxRow:
    action_id: str
    ticket_id: str
    kind: str
    adapter: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int


class Adapter(Protocol):
    name: str
    in_transaction: bool  # True: deliver() writes with the connection, in the transaction that marks delivery

    async def deliver(self, conn: psycopg.AsyncConnection[Any] | None, row: OutboxRow) -> None: ...


class WebhookAdapter:
    """HTTP POST of the payload as JSON with an Idempotency-Key header; 2xx = delivered."""

    name = WEBHOOK
    in_transaction = False

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, conn: psycopg.AsyncConnection[Any] | None, row: OutboxRow) -> None:
        headers = {"Idempotency-Key": row.idempotency_key, "X-Triage-Action": row.kind}
        try:
            resp = await self._http.post(self.url, json=row.payload, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError("timeout") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"transport error: {type(exc).__name__}: {exc}"[:300]) from None
        if 200 <= resp.status_code < 300:
            return
        raise DeliveryError(
            f"HTTP {resp.status_code}: {resp.text[:200]}", permanent=resp.status_code in PERMANENT_STATUSES
        )

    async def aclose(self) -> None:
        await self._http.aclose()


class WorkQueueAdapter:
    """A `triage.work_queue` row per action (unique by idempotency key), read by the human-queue tool."""

    name = WORK_QUEUE
    in_transaction = True

    async def deliver(self, conn: psycopg.AsyncConnection[Any] | None, row: OutboxRow) -> None:
        if conn is None:
            raise DeliveryError("work-queue delivery needs the dispatcher's database connection")
        await conn.execute(
            _QUEUE, (row.idempotency_key, row.ticket_id, row.payload.get("route") or row.kind, Jsonb(row.payload))
        )


class ReplyOutboxAdapter:
    """The embedded stack's mail room: a `triage.replies` row per reply (unique by idempotency key), shown as
    sent in the review console. A webhook to a real mail or ticketing system replaces it in production."""

    name = REPLY_OUTBOX
    in_transaction = True

    async def deliver(self, conn: psycopg.AsyncConnection[Any] | None, row: OutboxRow) -> None:
        if conn is None:
            raise DeliveryError("reply-outbox delivery needs the dispatcher's database connection")
        draft = row.payload.get("draft") or {}
        body = str(draft.get("text") or "")
        if not body:
            raise DeliveryError(f"action {row.idempotency_key} has no reply text to send", permanent=True)
        await conn.execute(_REPLY, (row.idempotency_key, row.ticket_id, row.kind, str(row.payload.get("channel") or ""),
                                    body, Jsonb(row.payload)))


@dataclass
class DispatchStats:
    delivered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    parked: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)


class Dispatcher:
    """Delivers due outbox rows; call `run_once()` on a timer. One connection, reopened after failures."""

    def __init__(
        self,
        url: str,
        adapters: Sequence[Adapter],
        breakers: BreakerBoard,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        lease_s: float = 60.0,
        batch: int = 50,
        concurrency: int = 8,
    ) -> None:
        self.url = url
        self.adapters = {a.name: a for a in adapters}
        self.breakers = breakers
        self.max_attempts, self.backoff_base_s, self.backoff_cap_s = max_attempts, backoff_base_s, backoff_cap_s
        self.lease_s, self.batch = lease_s, batch
        self.stats = DispatchStats()
        self._sem = asyncio.Semaphore(concurrency)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._db = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=5, row_factory=dict_row
            )
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        for a in self.adapters.values():
            closer = getattr(a, "aclose", None)
            if closer is not None:
                await closer()

    async def run_once(self) -> int:
        """Claim and deliver one batch of due actions; return how many were handled."""
        try:
            async with self._db:
                conn = await self._connection()
                cur = await conn.execute(_CLAIM, {"lease": self.lease_s, "limit": self.batch})
                rows = [OutboxRow(**r) for r in await cur.fetchall()]
        except psycopg.OperationalError:
            self._conn = None
            raise
        await asyncio.gather(*(self._handle(r) for r in rows))
        return len(rows)

    async def _handle(self, row: OutboxRow) -> None:
        adapter = self.adapters.get(row.adapter)
        if adapter is None:
            await self._fail(
                row,
                DeliveryError(
                    f"no adapter {row.adapter!r} configured in this worker (set TRIAGE_WEBHOOK_URL for webhooks)",
                    permanent=True,
                ),
            )
            return
        breaker = self.breakers.get(f"adapter:{row.adapter}")
        if not breaker.allow():
            snap = breaker.snapshot()
            self.stats.deferred[row.adapter] += 1
            async with self._db:
                conn = await self._connection()
                await conn.execute(_WAIT, (max(0.5, snap.retry_in_s or 0.5), row.action_id))
            return
        async with self._sem:
            try:
                if adapter.in_transaction:
                    async with self._db:
                        conn = await self._connection()
                        async with conn.transaction():
                            await adapter.deliver(conn, row)
                            await conn.execute(_DELIVERED, (row.action_id,))
                else:
                    await adapter.deliver(None, row)
                    async with self._db:
                        conn = await self._connection()
                        await conn.execute(_DELIVERED, (row.action_id,))
            except DeliveryError as exc:
                if not exc.permanent:
                    breaker.failure(str(exc))
                else:
                    breaker.success()  # the endpoint answered: it is up, the request is wrong
                await self._fail(row, exc)
                return
            except psycopg.Error as exc:
                breaker.failure(f"{type(exc).__name__}")
                await self._fail(row, DeliveryError(f"database error: {type(exc).__name__}: {exc}"[:300]))
                return
            except Exception as exc:  # noqa: BLE001 - an adapter bug must not stop the outbox or leak a probe
                log.exception("adapter %s failed on %s", row.adapter, row.idempotency_key)
                breaker.failure(type(exc).__name__)
                await self._fail(row, DeliveryError(f"adapter error: {type(exc).__name__}: {exc}"[:300]))
                return
        breaker.success()
        self.stats.delivered[row.adapter] += 1

    async def _fail(self, row: OutboxRow, exc: DeliveryError) -> None:
        attempts = row.attempts + 1
        park = exc.permanent or attempts >= self.max_attempts
        delay = 0.0 if park else retry_delay(attempts - 1, self.backoff_base_s, self.backoff_cap_s)
        status = "parked" if park else "failed"
        (self.stats.parked if park else self.stats.failed)[row.adapter] += 1
        if park:
            log.warning("action %s parked after %d attempts: %s", row.idempotency_key, attempts, exc)
        async with self._db:
            conn = await self._connection()
            await conn.execute(_FAILED, (status, str(exc)[:1000], delay, row.action_id))
