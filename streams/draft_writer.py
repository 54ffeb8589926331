"""Drafting one decision: masked ticket -> model or template -> guardrails -> llm_calls row + outbox.

`Drafter.handle(decision)` is what the drafting agent calls, with bounded concurrency, off the hot path.
It fails closed: the ticket text is masked again before anything leaves, and if masking raises, nothing
is sent and the ticket goes to `human_queue`. Over budget or with the LLM breaker open, the cheap path
serves (`TRIAGE_DRAFT_FALLBACK`: the intent's template reply, or `human_queue`), with the reason on the
decision, the llm_calls row and the action. No ticket waits longer than `TRIAGE_DRAFT_DEADLINE_S` for a model.

llm_calls `status`: `ok` the model's draft was kept; `fallback` the template reply was used instead (the
reason is in `error`); `error` the model call failed (template or human_queue followed); `skipped` no
draft at all, the ticket went to human_queue. The decision's row gets the same status, the final route
and the reason (`draft_status`, `draft_route`, `draft_reason`, migration 0002). Each ticket gets one
llm_calls row (`call_id` = `<ticket>:<workflow>`), so a replay is not drafted, paid for or enqueued twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from streams import budgets
from streams.actions import Draft, enqueue_actions
from streams.breaker import BreakerBoard
from streams.guardrails import check_draft
from streams.llm_client import LLMClient, LLMError, LLMUnavailable
from streams.prompts import Prompt, load_prompt
from triage.backoff import Backoff
from triage.names import T_DECISIONS, T_LLM_CALLS, qualified
from triage.pii import mask
from triage.schemas import Decision
from triage.settings import Settings

log = logging.getLogger(__name__)
WORKFLOW = "draft_reply"
DRAFT_ROUTES = frozenset({"draft_for_review", "auto_resolve"})
_CALL_COLS = (
    "call_id",
    "ticket_id",
    "workflow",
    "provider",
    "model",
    "prompt_id",
    "prompt_version",
    "temperature",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_ms",
    "finish_reason",
    "status",
    "error",
    "request",
    "response",
)
_INSERT_CALL = (
    f"INSERT INTO {qualified(T_LLM_CALLS)} ({', '.join(_CALL_COLS)}) VALUES ({', '.join(['%s'] * len(_CALL_COLS))}) "
    "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
_SEEN = f"SELECT status FROM {qualified(T_LLM_CALLS)} WHERE call_id = %s"
_ON_DECISION = (
    f"UPDATE {qualified(T_DECISIONS)} SET draft_status = %s, draft_route = %s, draft_reason = %s WHERE ticket_id = %s"
)


@dataclass(frozen=True)
class Outcome:
    """What happened to one decision (returned for tests and metrics)."""

    ticket_id: str
    route: str
    status: str | None  # llm_calls status; None when the route needs no draft or it was a replay
    draft: Draft | None = None
    reason: str | None = None
    actions: tuple[str, ...] = ()
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)


@dataclass
class _Call:
    """The llm_calls row being built."""

    provider: str = "template"
    model: str = "template"
    temperature: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    finish_reason: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    response: str | None = None


Publish = Callable[[Outcome], Awaitable[None]]


class Drafter:
    """One per worker: shares the LLM client, breakers, a semaphore and one Postgres connection."""

    def __init__(
        self,
        settings: Settings,
        db_url: str,
        llm: LLMClient | None,
        breakers: BreakerBoard,
        publish: Publish | None = None,
    ) -> None:
        self.settings, self.db_url, self.llm, self.breakers = settings, db_url, llm, breakers
        self.publish = publish
        self.slots = asyncio.Semaphore(settings.llm_max_concurrency)
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self._active: set[str] = set()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._db = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.db_url, autocommit=True, connect_timeout=5)
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self.llm is not None:
            await self.llm.aclose()

    async def _with_db(self, what: str, op: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]) -> Any:
        """Run `op` on the shared connection; while Postgres is down, wait and retry (at-least-once)."""
        backoff = Backoff(base=0.2)
        while True:
            try:
                async with self._db:
                    return await op(await self._connection())
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._conn = None
                delay = backoff.next()
                log.warning("postgres unavailable during %s (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)

    async def handle(self, decision: Decision) -> Outcome:
        """Draft (or not) one decision and store the result with its actions in one transaction."""
        started = time.monotonic()
        if decision.route not in DRAFT_ROUTES:
            webhook = self.settings.webhook_url is not None
            keys = await self._with_db("outbox", lambda c: _in_tx(c, enqueue_actions(c, decision, webhook=webhook)))
            return Outcome(decision.ticket_id, decision.route, None, actions=tuple(keys))
        if decision.ticket_id in self._active:  # the same decision twice in one batch (at-least-once)
            self.counts["replay"] += 1
            return Outcome(decision.ticket_id, decision.route, None, reason="already being drafted")
        self._active.add(decision.ticket_id)
        try:
            return await self._handle(decision, started)
        except Exception as exc:  # noqa: BLE001 - a drafting bug must not lose the ticket: a person takes it
            log.exception("drafting failed on ticket %s; sending it to human_queue", decision.ticket_id)
            return await self._finish(
                decision,
                f"{decision.ticket_id}:{WORKFLOW}",
                load_prompt(None),
                _Call(),
                "skipped",
                None,
                "human_queue",
                f"drafting failed ({type(exc).__name__})",
            )
        finally:
            self._active.discard(decision.ticket_id)

    async def _handle(self, decision: Decision, started: float) -> Outcome:
        call_id = f"{decision.ticket_id}:{WORKFLOW}"
        seen = await self._with_db("replay check", lambda c: _fetch(c, _SEEN, (call_id,)))
        if seen is not None:
            self.counts["replay"] += 1
            return Outcome(decision.ticket_id, decision.route, None, reason="already drafted")
        intent = decision.intent.label if decision.intent else None
        prompt = load_prompt(intent)
        call = _Call()
        try:
            text = mask(decision.masked_text).text
        except Exception as exc:  # noqa: BLE001 - fail closed: nothing leaves, a person takes the ticket
            log.error(
                "PII masking failed on ticket %s (%s): sending it to human_queue",
                decision.ticket_id,
                type(exc).__name__,
            )
            return await self._finish(
                decision,
                call_id,
                prompt,
                call,
                "skipped",
                None,
                "human_queue",
                f"PII masking failed ({type(exc).__name__}); nothing sent",
            )
        status, draft_text, reason, route = await self._draft(decision, prompt, text, call, started)
        draft = None
        if draft_text is not None:
            source = "llm" if status == "ok" else "template"
            draft = Draft(
                text=draft_text,
                source=source,
                prompt_id=prompt.id,
                prompt_version=prompt.version,
                call_id=call_id,
                reason=reason,
            )
        return await self._finish(decision, call_id, prompt, call, status, draft, route, reason)

    async def _draft(
        self, decision: Decision, prompt: Prompt, text: str, call: _Call, started: float
    ) -> tuple[str, str | None, str | None, str]:
        """(status, draft text or None, reason, route) for a masked ticket."""
        s = self.settings
        route = decision.route
        if route == "auto_resolve" and not s.draft_auto_resolve:
            return "fallback", prompt.template_reply, "template reply (model drafting of auto_resolve is off)", route
        if self.llm is None:
            return "fallback", prompt.template_reply, "no LLM configured", route
        urgency = decision.urgency.label if decision.urgency else "unknown"
        messages = prompt.messages(
            ticket=text, intent=prompt.intent if prompt.intent != "default" else "unknown", urgency=urgency
        )
        call.provider, call.model, call.temperature = self.llm.provider, self.llm.model, s.llm_temperature
        call.request = {
            "model": self.llm.model,
            "messages": messages,
            "temperature": s.llm_temperature,
            "max_tokens": s.llm_max_tokens,
            "sent": False,
        }
        if self.llm.breaker.state == "open":  # half-open: go on, the client sends the one probe
            return self._cheap_path(prompt, f"LLM breaker {self.llm.breaker.name} open", route)
        limits = s.llm_budgets.get(WORKFLOW)
        if limits is None:
            return self._cheap_path(prompt, f"no budget configured for workflow {WORKFLOW}", route)
        est_in = budgets.estimate_tokens("".join(m["content"] for m in messages))
        try:
            est_cost = self.llm.estimate_cost(est_in, s.llm_max_tokens)
            reservation = await self._with_db(
                "budget", lambda c: budgets.reserve(c, WORKFLOW, limits, est_in + s.llm_max_tokens, est_cost)
            )
        except (budgets.BudgetExceeded, budgets.UnpricedModel) as exc:
            return self._cheap_path(prompt, str(exc), route)
        remaining = s.draft_deadline_s - (time.monotonic() - started)
        try:
            await asyncio.wait_for(self.slots.acquire(), timeout=max(0.01, remaining))
        except TimeoutError:
            await self._settle(reservation, 0, Decimal(0))
            return self._cheap_path(prompt, f"no free LLM slot within {s.draft_deadline_s:g}s", route)
        self.in_flight += 1
        call.request["sent"] = True
        try:
            remaining = s.draft_deadline_s - (time.monotonic() - started)
            completion = await self.llm.chat(
                messages,
                prompt_id=prompt.id,
                prompt_version=prompt.version,
                temperature=s.llm_temperature,
                max_tokens=s.llm_max_tokens,
                deadline_s=max(0.01, remaining),
            )
        except LLMUnavailable as exc:
            await self._settle(reservation, 0, Decimal(0))
            return self._cheap_path(prompt, f"LLM unavailable: {exc.reason}", route)
        except LLMError as exc:
            call.latency_ms = exc.latency_ms
            if exc.reason == "timeout":  # the backend may have done (and billed) the work: keep the reservation
                call.tokens_in, call.cost_usd = reservation.tokens, reservation.cost_usd
            else:
                await self._settle(reservation, 0, Decimal(0))
            _, draft, reason, fallback_route = self._cheap_path(prompt, f"LLM call failed: {exc.reason}", route)
            return "error", draft, reason, fallback_route
        finally:
            self.in_flight -= 1
            self.slots.release()
        await self._settle(reservation, completion.tokens_in + completion.tokens_out, completion.cost_usd)
        call.tokens_in, call.tokens_out = completion.tokens_in, completion.tokens_out
        call.cost_usd, call.latency_ms = completion.cost_usd, completion.latency_ms
        call.finish_reason, call.response = completion.finish_reason, _masked(completion.text)
        check = check_draft(
            completion.text,
            ticket=text,
            facts=prompt.facts,
            allow=s.allow_list,
            min_chars=s.draft_min_chars,
            max_chars=s.draft_max_chars,
        )
        if not check.ok:
            return "fallback", prompt.template_reply, f"guardrail: {check.reason}", route
        return "ok", completion.text.strip(), None, route

    async def _settle(self, reservation: budgets.Reservation, tokens: int, cost: Decimal) -> None:
        await self._with_db("budget", lambda c: budgets.settle(c, reservation, tokens, cost))

    def _cheap_path(self, prompt: Prompt, reason: str, route: str) -> tuple[str, str | None, str | None, str]:
        """Over budget / breaker open / no slot / failed call: template reply or human_queue, as configured."""
        if self.settings.draft_fallback == "human_queue":
            return "skipped", None, f"{reason}; sent to human_queue", "human_queue"
        return "fallback", prompt.template_reply, reason, route

    async def _finish(
        self,
        decision: Decision,
        call_id: str,
        prompt: Prompt,
        call: _Call,
        status: str,
        draft: Draft | None,
        route: str,
        reason: str | None,
    ) -> Outcome:
        params = (
            call_id,
            decision.ticket_id,
            WORKFLOW,
            call.provider,
            call.model,
            prompt.id,
            prompt.version,
            call.temperature,
            call.tokens_in,
            call.tokens_out,
            call.cost_usd,
            call.latency_ms,
            call.finish_reason,
            status,
            reason,
            Jsonb(call.request),
            call.response,
        )

        async def op(conn: psycopg.AsyncConnection[Any]) -> list[str]:
            async with conn.transaction():
                cur = await conn.execute(_INSERT_CALL, params)
                if await cur.fetchone() is None:
                    return []  # another worker stored this ticket's draft first
                await conn.execute(_ON_DECISION, (status, route, reason, decision.ticket_id))
                return await enqueue_actions(
                    conn,
                    decision,
                    draft,
                    route=route,
                    reason=reason if route != decision.route else None,
                    webhook=self.settings.webhook_url is not None,
                )

        keys = await self._with_db("draft store", op)
        self.counts[status] += 1
        outcome = Outcome(
            decision.ticket_id,
            route,
            status,
            draft,
            reason,
            tuple(keys),
            call.tokens_in,
            call.tokens_out,
            call.cost_usd,
        )
        if self.publish is not None and keys:
            try:
                await self.publish(outcome)
            except Exception:  # noqa: BLE001 - the outbox has it; the topic is a convenience feed
                log.warning("could not publish the draft of %s", decision.ticket_id, exc_info=True)
        return outcome


def _masked(text: str) -> str:
    try:
        return mask(text).text
    except Exception:  # noqa: BLE001 - fail closed on what we store, too
        return ""


async def _in_tx(conn: psycopg.AsyncConnection[Any], coro: Awaitable[list[str]]) -> list[str]:
    async with conn.transaction():
        return await coro


async def _fetch(conn: psycopg.AsyncConnection[Any], sql: str, params: tuple[Any, ...]) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    return None if row is None else row[0]
