"""Outbox and action adapters on the real Postgres and a real local webhook server that counts
deliveries per Idempotency-Key: one effect per key however often a decision is replayed or redelivered."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from streams.actions import (
    Dispatcher,
    Draft,
    ReplyOutboxAdapter,
    WebhookAdapter,
    WorkQueueAdapter,
    enqueue_actions,
    enqueue_batch,
    retry_parked,
    route_effects,
    routes_without_effect,
)
from streams.breaker import BreakerBoard
from tests.support.fake_servers import WebhookSink, make_decision
from triage.labels import ROUTES
from triage.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration
DRAFT = Draft(
    text="Your card arrives within 5 working days.",
    source="template",
    prompt_id="draft.card_arrival",
    prompt_version="1+base.1",
)
REDO = "UPDATE triage.actions SET status = 'pending', next_attempt_at = now() WHERE adapter = %s"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def enqueue(url: str, decision: Any, draft: Draft | None = DRAFT, **kw: Any) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        return await enqueue_actions(conn, decision, draft, webhook=True, **kw)


def dispatcher(url: str, hook_url: str | None, **kw: Any) -> Dispatcher:
    adapters: list[Any] = [WorkQueueAdapter(), ReplyOutboxAdapter()]
    if hook_url:
        adapters.append(WebhookAdapter(hook_url, timeout_s=2))
    opts: dict[str, Any] = {"max_attempts": 4, "backoff_base_s": 0.05, "backoff_cap_s": 0.2}
    opts.update(kw)
    breakers = opts.pop("breakers", None) or BreakerBoard(failures=100, window_s=30, open_s=30)
    return Dispatcher(url, adapters, breakers, **opts)


def drain(d: Dispatcher, until: Callable[[], bool], rounds: int = 60) -> None:
    async def go() -> None:
        try:
            for _ in range(rounds):
                await d.run_once()
                if until():
                    return
                await asyncio.sleep(0.05)
        finally:
            await d.close()

    run(go())


def actions(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, status, attempts, last_error, adapter, kind, payload FROM triage.actions"
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def all_done(url: str) -> Callable[[], bool]:
    return lambda: all(v[0] in ("delivered", "parked") for v in actions(url).values())


def test_replayed_decision_is_one_row_per_key_and_one_effect(db_url: str) -> None:
    d = make_decision("T-1")
    first = run(enqueue(db_url, d))
    again = run(enqueue(db_url, d))
    assert sorted(first) == ["T-1:draft:webhook", "T-1:review:work_queue"]
    assert again == [], "a replayed decision must not write new actions"
    with WebhookSink() as sink:
        drain(dispatcher(db_url, sink.url), all_done(db_url))
        assert sink.deliveries == {"T-1:draft:webhook": 1}
        assert sink.effects["T-1:draft:webhook"]["draft"]["text"] == DRAFT.text
        # Redelivery after a crash between the POST and marking it delivered: same key, still one effect.
        with psycopg.connect(db_url) as conn:
            conn.execute(REDO, ("webhook",))
        drain(dispatcher(db_url, sink.url), all_done(db_url))
        assert sink.deliveries["T-1:draft:webhook"] == 2
        assert len(sink.effects) == 1
    with psycopg.connect(db_url) as conn:
        queue = conn.execute("SELECT idempotency_key, route FROM triage.work_queue").fetchall()
        conn.execute(REDO, ("work_queue",))
    assert queue == [("T-1:review:work_queue", "draft_for_review")]
    drain(dispatcher(db_url, None), all_done(db_url))
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM triage.work_queue").fetchone() == (1,)


def test_routes_map_to_adapters(db_url: str) -> None:
    assert run(enqueue(db_url, make_decision("H-1", route="human_queue"), None)) == ["H-1:human:work_queue"]
    assert sorted(run(enqueue(db_url, make_decision("E-1", route="escalate"), None))) == [
        "E-1:escalate:webhook",
        "E-1:escalate:work_queue",
    ]
    assert run(enqueue(db_url, make_decision("A-1", route="auto_resolve"), None)) == [], "a reply needs a draft"
    assert run(enqueue(db_url, make_decision("A-2", route="auto_resolve"))) == ["A-2:reply:webhook"]
    over = run(enqueue(db_url, make_decision("D-1"), None, route="human_queue", reason="over budget"))
    assert over == ["D-1:human:work_queue"]
    assert actions(db_url)["D-1:human:work_queue"][5]["reason"] == "over budget"


def test_every_route_has_an_effect_with_or_without_a_webhook() -> None:
    for webhook in (True, False):
        effects = route_effects(webhook)
        assert set(effects) == set(ROUTES)
        assert routes_without_effect(webhook) == [], effects
    assert route_effects(False)["auto_resolve"] == ["reply_outbox"]
    assert route_effects(True)["auto_resolve"] == ["webhook"]


def test_without_a_webhook_a_reply_is_sent_once_through_the_reply_outbox(db_url: str) -> None:
    async def enqueue_plain(decision: Any) -> list[str]:
        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            return await enqueue_actions(conn, decision, DRAFT, webhook=False)

    assert run(enqueue_plain(make_decision("R-1", route="auto_resolve"))) == ["R-1:reply:reply_outbox"]
    assert run(enqueue_plain(make_decision("R-1", route="auto_resolve"))) == []
    drain(dispatcher(db_url, None), all_done(db_url))
    assert actions(db_url)["R-1:reply:reply_outbox"][0] == "delivered"
    with psycopg.connect(db_url) as conn:
        conn.execute(REDO, ("reply_outbox",))  # redelivered after a crash: still one reply
    drain(dispatcher(db_url, None), all_done(db_url))
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT ticket_id, kind, body, status FROM triage.replies").fetchall()
    assert rows == [("R-1", "reply", DRAFT.text, "sent")]


def test_retries_with_backoff_then_delivers(db_url: str) -> None:
    run(enqueue(db_url, make_decision("R-1", route="auto_resolve")))
    with WebhookSink() as sink:
        sink.fail_next(2, 503)
        drain(dispatcher(db_url, sink.url), all_done(db_url))
        assert sink.deliveries["R-1:reply:webhook"] == 3
    status, attempts, last_error, *_ = actions(db_url)["R-1:reply:webhook"]
    assert (status, attempts, last_error) == ("delivered", 3, None)


def test_exhausted_retries_park_with_last_error_and_cli_requeues(db_url: str) -> None:
    run(enqueue(db_url, make_decision("P-1", route="auto_resolve")))
    with WebhookSink() as sink:
        sink.fail_next(3, 502)
        drain(dispatcher(db_url, sink.url, max_attempts=3), all_done(db_url))
        status, attempts, last_error, *_ = actions(db_url)["P-1:reply:webhook"]
        assert (status, attempts) == ("parked", 3) and last_error.startswith("HTTP 502")
        # the CLI works from the ops environment (psycopg, stdlib, triage only)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        env["DATABASE_URL"] = db_url
        triage = str(PROJECT_ROOT / ".venv" / "bin" / "triage")
        listed = subprocess.run(
            [triage, "actions", "list", "--status", "parked"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "outbox: parked 1" in listed.stdout and "P-1:reply:webhook" in listed.stdout
        assert "last error: HTTP 502" in listed.stdout
        out = subprocess.run(
            [triage, "actions", "retry"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, out.stderr
        assert "1 action(s) re-queued" in out.stdout
        assert actions(db_url)["P-1:reply:webhook"][:2] == ("pending", 0)
        drain(dispatcher(db_url, sink.url), all_done(db_url))
        assert actions(db_url)["P-1:reply:webhook"][0] == "delivered"
        assert len(sink.effects) == 1
    assert retry_parked(db_url) == []


def test_permanent_error_parks_at_once(db_url: str) -> None:
    run(enqueue(db_url, make_decision("Q-1", route="auto_resolve")))
    with WebhookSink() as sink:
        sink.fail_next(1, 422)
        drain(dispatcher(db_url, sink.url), all_done(db_url))
        assert sink.deliveries["Q-1:reply:webhook"] == 1
    assert actions(db_url)["Q-1:reply:webhook"][:2] == ("parked", 1)


def test_open_adapter_breaker_defers_without_spending_attempts(db_url: str) -> None:
    for i in range(4):
        run(enqueue(db_url, make_decision(f"B-{i}", route="auto_resolve")))
    board = BreakerBoard(failures=2, window_s=30, open_s=60)
    with WebhookSink() as sink:
        sink.fail_next(100, 500)
        d = dispatcher(db_url, sink.url, breakers=board, concurrency=1)
        drain(d, lambda: board.get("adapter:webhook").state == "open", rounds=20)
        sent = sum(sink.deliveries.values())
        drain(dispatcher(db_url, sink.url, breakers=board), lambda: False, rounds=5)
        assert sum(sink.deliveries.values()) == sent, "an open breaker sends nothing"
    assert sent >= 2
    rows = actions(db_url)
    assert sum(v[1] for v in rows.values()) == sent, "deferred actions keep their attempt count"
    assert all(v[0] in ("pending", "failed") for v in rows.values())
    assert d.stats.failed["webhook"] >= 2


def test_two_dispatchers_deliver_each_action_once(db_url: str) -> None:
    n = 30
    for i in range(n):
        run(enqueue(db_url, make_decision(f"C-{i}", route="auto_resolve")))
    with WebhookSink() as sink:

        async def both() -> None:
            a, b = dispatcher(db_url, sink.url, batch=5), dispatcher(db_url, sink.url, batch=5)
            try:
                for _ in range(40):
                    await asyncio.gather(a.run_once(), b.run_once())
                    if all_done(db_url)():
                        break
            finally:
                await a.close()
                await b.close()

        run(both())
        assert len(sink.deliveries) == n and set(sink.deliveries.values()) == {1}


def test_enqueue_batch_in_the_callers_transaction(db_url: str) -> None:
    decisions = [
        make_decision("S-1", route="human_queue"),
        make_decision("S-2", route="draft_for_review"),
        make_decision("S-3", route="escalate"),
    ]

    async def go(commit: bool) -> list[str]:
        conn = await psycopg.AsyncConnection.connect(db_url)
        async with conn, conn.transaction(force_rollback=not commit):
            return await enqueue_batch(conn, decisions)

    assert sorted(run(go(False))) == ["S-1:human:work_queue", "S-3:escalate:work_queue"]
    assert actions(db_url) == {}, "a rolled-back decision transaction leaves no action behind"
    assert len(run(go(True))) == 2 and len(actions(db_url)) == 2
    assert run(go(True)) == [], "a replayed batch creates no new action"
