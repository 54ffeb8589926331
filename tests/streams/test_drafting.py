"""Drafting end to end on real processes: Postgres, a fake OpenAI-compatible server that fails on command,
a webhook receiver that counts deliveries, and (last test) the faust agent on a real broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from apps.simulator import TicketGenerator
from apps.stack.procs import free_port, spawn, stop_group
from streams.actions import Dispatcher, WebhookAdapter, WorkQueueAdapter
from streams.breaker import BreakerBoard
from streams.draft_writer import Drafter, Outcome
from streams.llm_client import LLMClient
from tests.support.fake_servers import FakeLLM, WebhookSink, make_decision
from tests.support.stream_helpers import STREAM_PYTHON, produce, wait_for
from triage.names import TOPIC_DECISIONS
from triage.settings import PROJECT_ROOT, Settings, load_settings

pytestmark = pytest.mark.integration
PRICES = '{"fake-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}'
GOOD = (
    "Thank you for your message. Your new card is on its way and usually arrives within 5 working days of "
    "being ordered."
)


def settings_for(db_url: str, hook: str | None = None, **extra: str) -> Settings:
    env = {
        "DATABASE_URL": db_url,
        "TRIAGE_LLM_MODEL": "fake-model",
        "TRIAGE_LLM_PRICES": PRICES,
        "TRIAGE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "TRIAGE_LLM_PROVIDER": "fake",
        "TRIAGE_BREAKER_FAILURES": "3",
        "TRIAGE_LLM_MAX_RETRIES": "0",
        "TRIAGE_DRAFT_DEADLINE_S": "5",
    }
    if hook:
        env["TRIAGE_WEBHOOK_URL"] = hook
    env.update(extra)
    return load_settings(env)


def drafter(settings: Settings, fake: FakeLLM | None, board: BreakerBoard | None = None) -> Drafter:
    board = board or BreakerBoard(settings.breaker_failures, settings.breaker_window_s, settings.breaker_open_s)
    llm = None
    if fake is not None:
        llm = LLMClient(
            fake.url + "/v1",
            "fake-model",
            provider="fake",
            prices=settings.llm_prices,
            breaker=board.get("llm:fake"),
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            backoff_base_s=0.01,
        )
    return Drafter(settings, settings.db_url(), llm, board)


def handle_all(d: Drafter, decisions: list[Any]) -> list[Outcome]:
    async def go() -> list[Outcome]:
        try:
            return list(await asyncio.gather(*(d.handle(x) for x in decisions)))
        finally:
            await d.close()

    return asyncio.run(go())


def dispatch(settings: Settings) -> None:
    adapters: list[Any] = [WorkQueueAdapter()]
    if settings.webhook_url:
        adapters.append(WebhookAdapter(settings.webhook_url))
    d = Dispatcher(settings.db_url(), adapters, BreakerBoard(100, 30, 30), backoff_base_s=0.05)

    async def go() -> None:
        try:
            for _ in range(5):
                if not await d.run_once():
                    break
        finally:
            await d.close()

    asyncio.run(go())


def store_decisions(url: str, decisions: list[Any]) -> None:
    """Decision rows as the worker's audit sink writes them."""
    from streams.audit import AuditSink

    async def go() -> None:
        sink = AuditSink(url)
        try:
            await sink.write_batch([], decisions, [])
        finally:
            await sink.close()

    asyncio.run(go())


def calls(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT * FROM triage.llm_calls")
        names = [c.name for c in cur.description or []]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def outbox(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT idempotency_key, status, payload FROM triage.actions").fetchall()
    return {k: {"status": s, "payload": p} for k, s, p in rows}


@pytest.fixture()
def hook() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


def test_model_draft_kept_with_envelope_and_delivered(db_url: str, hook: WebhookSink) -> None:
    s = settings_for(db_url, hook.url)
    with FakeLLM(reply=GOOD) as fake:
        [out] = handle_all(drafter(s, fake), [make_decision("T-1")])
    assert out.status == "ok" and out.draft is not None and out.draft.source == "llm"
    row = calls(db_url)["T-1:draft_reply"]
    assert (row["provider"], row["model"], row["prompt_id"], row["status"]) == (
        "fake",
        "fake-model",
        "draft.card_arrival",
        "ok",
    )
    assert row["prompt_version"] == "1+base.2" and row["finish_reason"] == "stop"
    assert row["tokens_in"] > 0 and row["tokens_out"] > 0 and row["cost_usd"] > 0 and row["latency_ms"] > 0
    assert row["request"]["messages"][1]["content"].count("Where is my new card?") == 1
    assert row["request"]["sent"] is True
    assert sorted(out.actions) == ["T-1:draft:webhook", "T-1:review:work_queue"]
    dispatch(s)
    assert hook.effects["T-1:draft:webhook"]["draft"]["text"] == GOOD
    with psycopg.connect(db_url) as conn:
        used = conn.execute("SELECT tokens_used FROM triage.budgets WHERE period = 'hour'").fetchone()
    assert used == (row["tokens_in"] + row["tokens_out"],), "the budget is settled to the actual spend"


def test_guardrail_failure_serves_the_template_with_the_reason(db_url: str) -> None:
    s = settings_for(db_url)
    with FakeLLM(reply=GOOD + " Call us on +1 415 555 0134 or see https://scam.example.net.") as fake:
        [out] = handle_all(drafter(s, fake), [make_decision("G-1")])
    assert out.status == "fallback" and out.draft is not None and out.draft.source == "template"
    assert out.reason is not None and "guardrail" in out.reason and "phone" in out.reason and "URL" in out.reason
    assert out.draft.text.startswith("Thank you for your message about your card delivery")
    row = calls(db_url)["G-1:draft_reply"]
    assert row["status"] == "fallback" and row["error"].startswith("guardrail")
    assert outbox(db_url)["G-1:review:work_queue"]["payload"]["draft"]["fallback_reason"] == out.reason


def test_no_planted_pii_reaches_the_model_the_table_or_the_webhook(db_url: str, hook: WebhookSink) -> None:
    """Even if the decision's text arrived unmasked (an ingest bug), the drafter masks again before sending."""
    gen = TicketGenerator(seed=7, pii_rate=1.0)
    tickets = [gen.generate() for _ in range(40)]
    planted = [v for t in tickets for vals in t.pii.values() for v in vals]
    assert len(planted) == 40
    routes = ["draft_for_review", "escalate", "human_queue", "auto_resolve"]
    decisions = [
        make_decision(t.message["ticket_id"], route=routes[i % 4], text=t.text, intent=t.intent)
        for i, t in enumerate(tickets)
    ]
    s = settings_for(db_url, hook.url, TRIAGE_DRAFT_AUTO_RESOLVE="true")
    with FakeLLM(reply=GOOD) as fake:
        handle_all(drafter(s, fake), decisions)
        sent = json.dumps(fake.requests)
    dispatch(s)
    assert len(fake.requests) == 20 and len(hook.bodies) >= 20
    with psycopg.connect(db_url) as conn:
        stored = [r[0] for r in conn.execute("SELECT request::text || coalesce(response, '') FROM triage.llm_calls")]
        stored += [r[0] for r in conn.execute("SELECT payload::text FROM triage.actions")]
        stored += [r[0] for r in conn.execute("SELECT payload::text FROM triage.work_queue")]
    assert len(stored) >= 60
    haystacks = [sent, *stored, *hook.bodies]
    for value in planted:
        compact = "".join(value.split()).replace("-", "")
        for h in haystacks:
            assert value not in h and compact not in h.replace(" ", ""), f"planted PII leaked: {value[:4]}..."


def test_masking_failure_fails_closed_to_human_queue(
    db_url: str, hook: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(text: str) -> Any:
        raise RuntimeError("detector crashed")

    monkeypatch.setattr("streams.draft_writer.mask", broken)
    monkeypatch.setattr("streams.actions.mask", broken)
    s = settings_for(db_url, hook.url)
    with FakeLLM(reply=GOOD) as fake:
        [out] = handle_all(drafter(s, fake), [make_decision("M-1", text="card 4111 1111 1111 1111")])
        assert fake.requests == [], "nothing may be sent when masking fails"
    assert (out.status, out.route, out.draft) == ("skipped", "human_queue", None)
    row = calls(db_url)["M-1:draft_reply"]
    assert row["status"] == "skipped" and "PII masking failed" in row["error"] and row["request"] == {}
    action = outbox(db_url)["M-1:human:work_queue"]
    assert action["payload"]["masked_text"] == "" and "withheld" in action["payload"]["text_withheld"]
    assert action["payload"]["reason"].startswith("PII masking failed")


def test_an_unexpected_drafting_error_sends_the_ticket_to_a_person(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr("streams.draft_writer.check_draft", boom)
    with FakeLLM(reply=GOOD) as fake:
        [out] = handle_all(drafter(settings_for(db_url), fake), [make_decision("X-1")])
    assert (out.status, out.route) == ("skipped", "human_queue")
    assert out.actions == ("X-1:human:work_queue",)
    assert calls(db_url)["X-1:draft_reply"]["error"] == "drafting failed (KeyError)"


@pytest.mark.parametrize("fallback", ["template", "human_queue"])
def test_over_budget_takes_the_configured_cheap_path(db_url: str, fallback: str) -> None:
    budget = '{"draft_reply": {"hour_tokens": 700, "hour_usd": 1, "day_tokens": 100000, "day_usd": 1}}'
    s = settings_for(db_url, TRIAGE_LLM_BUDGETS=budget, TRIAGE_DRAFT_FALLBACK=fallback)
    decisions = [make_decision(f"O-{i}") for i in range(4)]
    store_decisions(db_url, decisions)
    with FakeLLM(reply=GOOD) as fake:
        outs = handle_all(drafter(s, fake), decisions)
        assert 1 <= len(fake.requests) < 4
    over = [o for o in outs if o.reason and "budget of workflow draft_reply exhausted" in o.reason]
    assert len(over) == 4 - len(fake.requests)
    for o in over:
        if fallback == "template":
            assert o.status == "fallback" and o.draft is not None and o.route == "draft_for_review"
        else:
            assert o.status == "skipped" and o.draft is None and o.route == "human_queue"
            assert f"{o.ticket_id}:human:work_queue" in o.actions
    with psycopg.connect(db_url) as conn:
        hour = conn.execute("SELECT tokens_used, token_limit FROM triage.budgets WHERE period = 'hour'").fetchone()
        on_decisions = conn.execute(
            "SELECT ticket_id, draft_status, draft_route, draft_reason FROM triage.decisions "
            "WHERE draft_reason LIKE '%%exhausted%%'"
        ).fetchall()
    assert hour is not None and hour[0] <= hour[1]
    expected_status = "fallback" if fallback == "template" else "skipped"
    expected_route = "draft_for_review" if fallback == "template" else "human_queue"
    assert sorted(r[0] for r in on_decisions) == sorted(o.ticket_id for o in over), "the reason is on the decision"
    assert {(r[1], r[2]) for r in on_decisions} == {(expected_status, expected_route)}


def test_breaker_opens_then_template_then_half_open_probe_closes(db_url: str) -> None:
    s = settings_for(db_url, TRIAGE_BREAKER_OPEN_S="0.5")
    board = BreakerBoard(3, 30, 0.5)
    with FakeLLM(reply=GOOD) as fake:
        fake.default = "status:500"
        outs = handle_all(drafter(s, fake, board), [make_decision(f"F-{i}") for i in range(3)])
        assert [o.status for o in outs] == ["error"] * 3
        assert board.get("llm:fake").state == "open"
        outs = handle_all(drafter(s, fake, board), [make_decision(f"F-{i}") for i in range(3, 6)])
        assert len(fake.requests) == 3, "an open breaker sends nothing"
        assert all(o.status == "fallback" and "breaker" in (o.reason or "") for o in outs)
        assert calls(db_url)["F-3:draft_reply"]["request"]["sent"] is False
        time.sleep(0.55)
        fake.default = "ok"
        [out] = handle_all(drafter(s, fake, board), [make_decision("F-6")])
        assert out.status == "ok" and board.get("llm:fake").state == "closed"


def test_nothing_waits_longer_than_the_deadline_and_concurrency_is_bounded(db_url: str) -> None:
    s = settings_for(
        db_url, TRIAGE_DRAFT_DEADLINE_S="1.0", TRIAGE_LLM_MAX_CONCURRENCY="2", TRIAGE_BREAKER_FAILURES="100"
    )
    with FakeLLM(reply=GOOD) as fake:
        fake.default = "sleep:0.3"
        t0 = time.monotonic()
        outs = handle_all(drafter(s, fake), [make_decision(f"D-{i}") for i in range(8)])
        elapsed = time.monotonic() - t0
        assert fake.max_in_flight == 2
        fake.default = "sleep:5"
        t0 = time.monotonic()
        [slow] = handle_all(drafter(s, fake), [make_decision("D-slow")])
        slow_elapsed = time.monotonic() - t0
    assert sum(o.status == "ok" for o in outs) >= 4
    late = [o for o in outs if o.status != "ok"]
    assert all(o.draft is not None and o.draft.source == "template" for o in late)
    assert elapsed < 2.5
    assert slow.status == "error" and slow.draft is not None and slow_elapsed < 2.0


def test_replayed_and_undraftable_decisions(db_url: str) -> None:
    s = settings_for(db_url)
    with FakeLLM(reply=GOOD) as fake:
        d = make_decision("RP-1")
        handle_all(drafter(s, fake), [d])
        [again] = handle_all(drafter(s, fake), [d])
        [human] = handle_all(drafter(s, fake), [make_decision("H-1", route="human_queue")])
        [auto] = handle_all(drafter(s, fake), [make_decision("A-1", route="auto_resolve")])
        assert len(fake.requests) == 1, "a replay is not drafted again; other routes need no model"
    assert again.status is None and again.reason == "already drafted"
    assert human.status is None and human.actions == ("H-1:human:work_queue",)
    assert auto.status == "fallback" and auto.draft is not None and auto.route == "auto_resolve"
    assert len(calls(db_url)) == 2
    no_llm = handle_all(drafter(s, None), [make_decision("N-1")])[0]
    assert no_llm.status == "fallback" and no_llm.reason == "no LLM configured"


def test_drafting_worker_on_a_real_broker(db_url: str, broker: str, tmp_path: Path, hook: WebhookSink) -> None:
    with FakeLLM(reply=GOOD) as fake:
        port = free_port()
        env = {
            "DATABASE_URL": db_url,
            "KAFKA_BOOTSTRAP_SERVERS": broker,
            "TRIAGE_STATE_DIR": str(tmp_path),
            "TRIAGE_KAFKA_PARTITIONS": "4",
            "TRIAGE_LLM_BASE_URL": fake.url + "/v1",
            "TRIAGE_LLM_MODEL": "fake-model",
            "TRIAGE_LLM_PRICES": PRICES,
            "TRIAGE_WEBHOOK_URL": hook.url,
            "TRIAGE_ACTION_POLL_S": "0.2",
            "PATH": "/usr/bin:/bin",
        }
        proc = spawn(
            [str(STREAM_PYTHON), "-m", "streams.drafting_worker", "--web-port", str(port)],
            tmp_path / "d.log",
            env=env,
            cwd=PROJECT_ROOT,
        )
        try:
            decisions = [make_decision(f"K-{i}") for i in range(3)] + [make_decision("K-h", route="human_queue")]
            messages = [(d.ticket_id.encode(), d.model_dump_json().encode()) for d in decisions]
            messages += messages  # at-least-once: every decision delivered twice
            produce(broker, TOPIC_DECISIONS, messages)

            def delivered() -> bool:
                assert proc.poll() is None, (tmp_path / "d.log").read_text()[-3000:]
                return len(hook.effects) == 3

            wait_for(delivered, 90, f"drafts delivered to the webhook (log {tmp_path / 'd.log'})")
            status = json.loads(_get(f"http://127.0.0.1:{port}/drafting"))
            assert status["llm"]["model"] == "fake-model" and status["breakers"][0]["state"] == "closed"
            # The webhook has the effects once the POSTs are answered; the dispatcher counts each delivery
            # just after its answer arrives, so wait for the counter rather than read it at once.
            delivered_line = 'triage_actions_total{adapter="webhook",outcome="delivered"} 3.0'

            def counted() -> str | None:
                page = _get(f"http://127.0.0.1:{port}/metrics")
                return page if delivered_line in page else None

            metrics = wait_for(counted, 15, "the delivery counter")
            assert 'triage_breaker_state{name="llm:llama.cpp:fake-model"} 0.0' in metrics
            assert 'triage_drafts_total{status="ok"} 3.0' in metrics
            assert (
                'triage_llm_tokens_total{direction="out"}' in metrics
                and "triage_llm_cost_usd_total 0.0\n" not in metrics
            )
        finally:
            stop_group(proc.pid)
    assert set(hook.deliveries) == {f"K-{i}:draft:webhook" for i in range(3)}
    assert len(fake.requests) == 3, "each decision drafted once even when delivered twice"
    with psycopg.connect(db_url) as conn:
        queue = dict(conn.execute("SELECT idempotency_key, route FROM triage.work_queue").fetchall())
    assert queue == {
        "K-0:review:work_queue": "draft_for_review",
        "K-1:review:work_queue": "draft_for_review",
        "K-2:review:work_queue": "draft_for_review",
        "K-h:human:work_queue": "human_queue",
    }


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())
