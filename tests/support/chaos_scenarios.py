"""Fault-injection scenarios: each starts its own embedded stack, injects one fault and verifies input vs output.

Used by `bench/chaos.py` (the full sizes, `make chaos`) and by `tests/chaos/` (short versions in `make test`).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import chaos_stack as lib
from tests.support.chaos_stack import ScenarioResult, Stack, WebhookReceiver, say
from tests.support.stream_helpers import wait_for
from triage.names import TOPIC_DECISIONS, TOPIC_FEEDBACK, TOPIC_RAW

FAKE_MODEL = "fake-model"
PRICES = json.dumps({FAKE_MODEL: {"input_per_mtok": 1.0, "output_per_mtok": 2.0}})


@contextlib.contextmanager
def fake_llm() -> Iterator[Any]:
    from tests.support.fake_servers import FakeLLM

    with FakeLLM(model=FAKE_MODEL) as llm:
        yield llm


def drafting_env(hook: WebhookReceiver | None, llm_url: str | None, **extra: str) -> dict[str, str]:
    env = {"TRIAGE_ACTION_BACKOFF_S": "0.5", "TRIAGE_ACTION_BACKOFF_CAP_S": "5", "TRIAGE_ACTION_MAX_ATTEMPTS": "100",
           "TRIAGE_ACTION_POLL_S": "0.5", "TRIAGE_LLM_MODEL": FAKE_MODEL, "TRIAGE_LLM_PRICES": PRICES,
           "TRIAGE_LLM_TIMEOUT_S": "2", "TRIAGE_DRAFT_DEADLINE_S": "5"}
    if hook is not None:
        env["TRIAGE_WEBHOOK_URL"] = hook.url
    if llm_url is not None:
        env["TRIAGE_LLM_BASE_URL"] = f"{llm_url}/v1"
    env.update(extra)
    return env


def kill_restart(work: Path, n_tickets: int, kills: int, seed: int, with_actions: bool = True,
                 drain_timeout: float = 600.0) -> ScenarioResult:
    """Scenario 1: kill -9 the only stream worker at random moments while tickets flow, restarting it."""
    rng = random.Random(seed)
    inputs = lib.build_inputs(n_tickets, seed)
    parts = lib.chunks(inputs, kills + 1, seed)
    moments: list[float] = []
    with Stack(work) as stack, WebhookReceiver() as hook, contextlib.ExitStack() as procs:
        drafting = None
        if with_actions:
            llm = procs.enter_context(fake_llm())
            drafting = lib.drafting_worker(stack, "drafting", drafting_env(hook, llm.url))
            procs.callback(drafting.stop)
            drafting.start(health="/drafting")
        workers = [lib.stream_worker(stack, "worker-0")]
        procs.callback(lambda: workers[-1].stop())
        workers[-1].start()
        for i, part in enumerate(parts):
            lib.produce(stack.bootstrap, inputs, part)
            if i < kills:
                moment = rng.uniform(0.5, 4.0)
                time.sleep(moment)
                moments.append(round(moment, 2))
                before = lib.progress(stack.url)
                workers[-1].kill9()
                say(f"kill -9 #{i + 1} of worker {workers[-1].name} {moment:.1f}s into chunk {i + 1} "
                    f"(decisions, DLQ, feedback so far: {before})")
                workers.append(lib.stream_worker(stack, f"worker-{i + 1}"))
                workers[-1].start()
        drained = lib.wait_drained(stack.url, inputs, drain_timeout)
        settled = lib.wait_actions_settled(stack.url, hook, 300 + n_tickets / 10) if with_actions else True
        v = lib.verify(f"1 kill -9 x{kills}, restart", stack.url, inputs, hook if with_actions else None,
                       {"drained": drained, "actions_settled": settled, "kills_done": sum(w.kills for w in workers)
                        == kills})
        v.details.update(kills=kills, kill_moments_s=moments, worker_logs=[str(w.log_path) for w in workers])
        return v


def survivor(work: Path, n_tickets: int, seed: int, drain_timeout: float = 600.0) -> ScenarioResult:
    """Scenario 2: two workers, one killed and not restarted; the survivor takes its partitions."""
    rng = random.Random(seed)
    inputs = lib.build_inputs(n_tickets, seed)
    first, second = lib.chunks(inputs, 2, seed)
    with Stack(work) as stack, WebhookReceiver() as hook, fake_llm() as llm, contextlib.ExitStack() as procs:
        drafting = lib.drafting_worker(stack, "drafting", drafting_env(hook, llm.url))
        procs.callback(drafting.stop)
        drafting.start(health="/drafting")
        a, b = lib.stream_worker(stack, "worker-a"), lib.stream_worker(stack, "worker-b")
        procs.callback(a.stop)
        procs.callback(b.stop)
        a.start()
        b.start()
        wait_for(lambda: len(json.loads(b.get("/health")).get("partitions", [])) > 0, 90,
                     "the second worker to get partitions")
        lib.produce(stack.bootstrap, inputs, first)
        time.sleep(rng.uniform(1.0, 4.0))
        b_parts = json.loads(b.get("/health")).get("partitions", [])
        b.kill9()
        say(f"killed worker-b (held {b_parts}); not restarting it")
        lib.produce(stack.bootstrap, inputs, second)
        drained = lib.wait_drained(stack.url, inputs, drain_timeout)
        settled = lib.wait_actions_settled(stack.url, hook, 180)
        a_parts = json.loads(a.get("/health")).get("partitions", [])
        took_all = all(f"{TOPIC_RAW}:{p}" in a_parts for p in range(lib.PARTITIONS))
        v = lib.verify("2 two workers, one killed", stack.url, inputs, hook,
                       {"drained": drained, "actions_settled": settled, "survivor_has_all_partitions": took_all})
        v.details.update(killed_held=b_parts, survivor_holds=a_parts)
        return v


def postgres_outage(work: Path, n_tickets: int, seed: int, down_s: float, with_actions: bool = True,
                    drain_timeout: float = 600.0) -> ScenarioResult:
    """Scenario 3: Postgres stopped for `down_s` seconds mid-stream and started again."""
    inputs = lib.build_inputs(n_tickets, seed)
    first, second = lib.chunks(inputs, 2, seed)
    with Stack(work) as stack, WebhookReceiver() as hook, contextlib.ExitStack() as procs:
        if with_actions:
            llm = procs.enter_context(fake_llm())
            drafting = lib.drafting_worker(stack, "drafting", drafting_env(hook, llm.url))
            procs.callback(drafting.stop)
            drafting.start(health="/drafting")
        w = lib.stream_worker(stack, "worker")
        procs.callback(w.stop)
        w.start()
        lib.produce(stack.bootstrap, inputs, first)
        time.sleep(1.5)
        mark = len(w.log_text())
        at = lib.progress(stack.url)
        stack.stop_postgres()
        say(f"postgres stopped at {at} (decisions, DLQ, feedback); down for {down_s:.0f}s")
        t0 = time.monotonic()
        lib.produce(stack.bootstrap, inputs, second)
        time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
        stack.start_postgres()
        say("postgres started again")
        drained = lib.wait_drained(stack.url, inputs, drain_timeout)
        settled = lib.wait_actions_settled(stack.url, hook, 180) if with_actions else True
        time.sleep(1.0)
        log = w.log_text()[mark:]
        outage = lib.log_lines(log, lib.OUTAGE_LINE)
        recovery = lib.log_lines(log, lib.RECOVERY_LINE)
        warnings = [line for line in log.splitlines() if any(m in line for m in ("[WARNING]", "[ERROR]", "[CRITICAL]"))]
        v = lib.verify(f"3 postgres down {down_s:.0f}s", stack.url, inputs, hook if with_actions else None,
                       {"drained": drained, "actions_settled": settled, "outage_logged": len(outage) >= 1,
                        "recovery_logged": len(recovery) >= 1,
                        "one_outage_line": len(outage) == 1, "one_recovery_line": len(recovery) == 1})
        v.details.update(outage_lines=len(outage), recovery_lines=len(recovery), outage_sample=outage[:3],
                         recovery_sample=recovery[:3], warning_or_error_lines=len(warnings),
                         worker_log=str(w.log_path))
        return v


def llm_faults(work: Path, n_tickets: int, seed: int, drain_timeout: float = 600.0) -> ScenarioResult:
    """Scenario 4: the LLM answers 500, then times out, then rate-limits (429), then recovers, while tickets
    trickle in; the breaker opens, drafts fall back to templates within the deadline, and it closes again."""
    inputs = lib.build_inputs(n_tickets, seed)
    parts = lib.chunks(inputs, 16, seed)
    deadline_s, open_s = 5.0, 3.0
    phases = [("HTTP 500", "status:500", parts[1:4]), ("timeout", "sleep:4", parts[4:7]),
              ("429 rate limit", "429:1", parts[7:10]), ("recovered", "ok", parts[10:])]
    evidence: list[dict[str, Any]] = []
    with Stack(work) as stack, WebhookReceiver() as hook, fake_llm() as llm, contextlib.ExitStack() as procs:
        drafting = lib.drafting_worker(stack, "drafting", drafting_env(
            hook, llm.url, TRIAGE_BREAKER_FAILURES="3", TRIAGE_BREAKER_OPEN_S=str(open_s),
            TRIAGE_DRAFT_DEADLINE_S=str(deadline_s), TRIAGE_LLM_MAX_RETRIES="1", TRIAGE_LLM_TIMEOUT_S="2"))
        procs.callback(drafting.stop)
        drafting.start(health="/drafting")
        w = lib.stream_worker(stack, "worker")
        procs.callback(w.stop)
        w.start()

        def breaker_states() -> list[str]:
            body = json.loads(drafting.get("/drafting"))
            return [b.get("state", "") for b in body.get("breakers", []) if str(b.get("name", "")).startswith("llm")]

        # Warm-up with a healthy backend until drafts reach it: the drafting group has joined and drafts.
        lib.produce(stack.bootstrap, inputs, parts[0])
        wait_for(lambda: len(llm.requests) > 0, 120, "the first draft to reach the LLM")
        faults_from = time.time()
        recovered_at = faults_from
        for name, step, chunks_ in phases:
            with llm.lock:
                llm.default = step
                before = len(llm.requests)
            if name == "recovered":
                recovered_at = time.time()
            seen: set[str] = set()
            for part in chunks_:  # a trickle: one chunk about every `open_s`, so half-open probes happen
                lib.produce(stack.bootstrap, inputs, part)
                t_end = time.monotonic() + open_s + 0.5
                while time.monotonic() < t_end:
                    seen.update(breaker_states())
                    time.sleep(0.25)
            with llm.lock:
                sent = len(llm.requests) - before
            evidence.append({"phase": name, "llm_requests": sent, "breaker_states_seen": sorted(seen)})
            say(f"LLM phase {name}: {sent} requests, breaker states seen {sorted(seen)}")
        drained = lib.wait_drained(stack.url, inputs, drain_timeout)
        closed = False
        try:
            closed = bool(wait_for(lambda: breaker_states() and all(s == "closed" for s in breaker_states()),
                                       30, "the LLM breaker to close"))
        except TimeoutError as exc:
            say(str(exc))
        settled = lib.wait_actions_settled(stack.url, hook, 180)
        calls = lib.fetch(stack.url, "SELECT status, latency_ms FROM triage.llm_calls")
        by_status: dict[str, int] = {}
        for status, _lat in calls:
            by_status[status] = by_status.get(status, 0) + 1
        slowest = max((float(r[1]) for r in calls), default=0.0)
        templates = lib.scalar(stack.url, "SELECT count(*) FROM triage.llm_calls WHERE status IN ('fallback', "
                                          "'error') AND coalesce(error, '') NOT LIKE 'template reply (model drafting "
                                          "of auto_resolve%%'")
        ok_after = lib.scalar(stack.url, "SELECT count(*) FROM triage.llm_calls WHERE status = 'ok' AND "
                                         "created_at >= to_timestamp(%s)", (recovered_at,))
        reasons = lib.fetch(stack.url, "SELECT created_at >= to_timestamp(%s) AS after, status, "
                                       "left(coalesce(error, ''), 120), count(*) FROM triage.llm_calls "
                                       "GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC", (recovered_at,))
        # How long a ticket waited for its draft (decision committed -> llm_calls row committed), for the
        # tickets decided once faults began (warm-up tickets also waited for the drafting group to join).
        wait_s = float(lib.scalar(stack.url, "SELECT coalesce(ceil(1000 * max(extract(epoch FROM l.created_at - "
                                             "d.decided_at))), 0) FROM triage.llm_calls l JOIN triage.decisions d "
                                             "USING (ticket_id) WHERE d.decided_at >= to_timestamp(%s)",
                                  (faults_from,))) / 1000.0
        opened = any("open" in e["breaker_states_seen"] for e in evidence)
        v = lib.verify("4 LLM 500/timeout/429", stack.url, inputs, hook,
                       {"drained": drained, "actions_settled": settled, "breaker_opened": opened,
                        "templates_used": templates > 0, "within_deadline": slowest <= deadline_s * 1000 + 1000,
                        "draft_wait_within_deadline_plus_3s": wait_s <= deadline_s + 3.0,
                        "breaker_closed_on_recovery": closed, "llm_used_after_recovery": ok_after > 0})
        v.details.update(phases=evidence, max_draft_wait_s=wait_s, llm_calls=by_status,
                         slowest_llm_call_ms=round(slowest, 1),
                         deadline_s=deadline_s, breaker_open_s=open_s, llm_requests=len(llm.requests),
                         template_fallbacks=templates, ok_after_recovery=ok_after,
                         breaker_states_at_end=breaker_states(),
                         reasons=[{"after_recovery": r[0], "status": r[1], "error": r[2], "n": r[3]} for r in reasons])
        return v


def webhook_outage(work: Path, n_tickets: int, seed: int, down_s: float,
                   drain_timeout: float = 600.0) -> ScenarioResult:
    """Scenario 5: the webhook receiver is down for `down_s` seconds; actions retried, then delivered once."""
    inputs = lib.build_inputs(n_tickets, seed)
    first, second = lib.chunks(inputs, 2, seed)
    with Stack(work) as stack, fake_llm() as llm, contextlib.ExitStack() as procs:
        hook = WebhookReceiver()
        procs.callback(hook.down)
        drafting = lib.drafting_worker(stack, "drafting", drafting_env(hook, llm.url))
        procs.callback(drafting.stop)
        drafting.start(health="/drafting")
        w = lib.stream_worker(stack, "worker")
        procs.callback(w.stop)
        w.start()
        say(f"webhook receiver down for {down_s:.0f}s")
        t0 = time.monotonic()
        lib.produce(stack.bootstrap, inputs, first)
        lib.produce(stack.bootstrap, inputs, second)
        time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
        failed_meanwhile = lib.scalar(stack.url, "SELECT count(*) FROM triage.actions WHERE adapter = 'webhook' "
                                                 "AND attempts > 0 AND status <> 'delivered'")
        hook.up()
        say("webhook receiver up")
        drained = lib.wait_drained(stack.url, inputs, drain_timeout)
        settled = lib.wait_actions_settled(stack.url, hook, 240)
        parked = lib.scalar(stack.url, "SELECT count(*) FROM triage.actions WHERE status = 'parked'")
        v = lib.verify(f"5 webhook down {down_s:.0f}s", stack.url, inputs, hook,
                       {"drained": drained, "actions_settled": settled, "retried_while_down": failed_meanwhile > 0,
                        "none_parked": parked == 0})
        v.details.update(actions_retrying_while_down=failed_meanwhile, parked=parked)
        return v


def fuzz(work: Path, cases: int, e2e_cases: int, seed: int, drain_timeout: float = 300.0) -> ScenarioResult:
    """Scenario 6: hypothesis over the ticket and feedback decoders and the policy loader, then a sample of the
    hostile bytes through a real worker: each one a decision or a dead-letter row, the worker still up."""
    from tests.support import fuzz as chaos_fuzz

    report: dict[str, Any] = chaos_fuzz.run_decoders(cases, seed) if cases else {"crashes": [], "unexplained": []}
    sample = chaos_fuzz.hostile_sample(e2e_cases, seed)
    checks: dict[str, bool] = {"no_crash": not report["crashes"], "bad_cases_explained": not report["unexplained"]}
    details: dict[str, Any] = {"fuzz": report}
    decisions = dlq = lost = dup = 0
    if e2e_cases:
        with Stack(work) as stack, contextlib.ExitStack() as procs:
            w = lib.stream_worker(stack, "worker")
            procs.callback(w.stop)
            w.start()
            raw_at = lib.produce_raw(stack.bootstrap, TOPIC_RAW, [v for v, _ in sample])
            fb_values = chaos_fuzz.hostile_feedback_sample(e2e_cases // 2, seed)
            fb_at = lib.produce_raw(stack.bootstrap, TOPIC_FEEDBACK, fb_values)
            expected_ids = {tid for _v, tid in sample if tid is not None}
            n_bad = sum(1 for _v, tid in sample if tid is None)

            def outcome() -> tuple[int, int, int]:
                d = lib.scalar(stack.url, "SELECT count(*) FROM triage.decisions WHERE ticket_id = ANY(%s)",
                               (list(expected_ids),))
                q = lib.scalar(stack.url, "SELECT count(*) FROM triage.dead_letters WHERE source_topic = %s",
                               (TOPIC_RAW,))
                f = lib.scalar(stack.url, "SELECT count(*) FROM triage.dead_letters WHERE source_topic = %s",
                               (TOPIC_FEEDBACK,)) + lib.scalar(stack.url, "SELECT count(*) FROM triage.feedback")
                return d, q, f

            try:
                wait_for(lambda: (o := outcome()) and o[0] >= len(expected_ids) and o[1] >= n_bad
                             and o[2] >= len(fb_values), drain_timeout, "every hostile message to have an outcome")
            except TimeoutError as exc:
                say(str(exc))
            d, q, f = outcome()
            dead_at = {(r[0], r[1]) for r in lib.fetch(stack.url, "SELECT partition, \"offset\" FROM "
                                                                  "triage.dead_letters WHERE source_topic = %s",
                                                       (TOPIC_RAW,))}
            bad_at = {at for at, (_v, tid) in zip(raw_at, sample, strict=True) if tid is None}
            decisions, dlq = d, len(dead_at & bad_at)
            lost = (len(expected_ids) - d) + len(bad_at - dead_at) + max(0, len(fb_values) - f)
            dup = len(dead_at - bad_at)  # a valid message dead-lettered, or a dead letter twice
            checks.update(e2e_nothing_lost=lost == 0, e2e_no_strays=dup == 0, worker_alive=w.alive())
            details.update(e2e_raw=len(sample), e2e_valid=len(expected_ids), e2e_bad=n_bad,
                           e2e_feedback=len(fb_values), e2e_feedback_outcomes=f, feedback_at=len(fb_at))
    details["checks"] = checks
    return ScenarioResult(scenario=f"6 fuzz {cases} cases + {e2e_cases} e2e", tickets_in=cases + e2e_cases,
                   decisions=decisions, dlq=dlq, effects=0, duplicates=dup, lost=lost,
                   passed=all(checks.values()), details=details)


def budget_two_workers(work: Path, n_decisions: int, seed: int, drain_timeout: float = 300.0) -> ScenarioResult:
    """Scenario 7: two drafting workers share one budget; the money spent never exceeds it."""
    from tests.support.fake_servers import make_decision

    # About 30 calls' worth at the reservation estimate (prompt + max_tokens at 1/2 USD per Mtok): 300 drafts
    # asked for, so the budget runs out part-way, with two processes reserving against it at once.
    budget_usd = 0.02
    budgets = json.dumps({"draft_reply": {"hour_tokens": 10_000_000, "hour_usd": budget_usd,
                                          "day_tokens": 10_000_000, "day_usd": 1.0}})
    prices = PRICES
    with Stack(work) as stack, WebhookReceiver() as hook, fake_llm() as llm, contextlib.ExitStack() as procs:
        env = drafting_env(hook, llm.url, TRIAGE_LLM_BUDGETS=budgets, TRIAGE_LLM_PRICES=prices)
        a, b = lib.drafting_worker(stack, "drafting-a", env), lib.drafting_worker(stack, "drafting-b", env)
        for p in (a, b):
            procs.callback(p.stop)
            p.start(health="/drafting")
        time.sleep(8)  # let the two join one group and split the partitions
        ids = [f"BUDGET-{seed}-{i:05d}" for i in range(n_decisions)]
        values = [make_decision(t, route="draft_for_review").model_dump_json().encode() for t in ids]
        lib.produce_raw(stack.bootstrap, TOPIC_DECISIONS, values)
        try:
            wait_for(lambda: lib.scalar(stack.url, "SELECT count(*) FROM triage.llm_calls") >= n_decisions,
                         drain_timeout, "every decision to have an llm_calls row")
        except TimeoutError as exc:
            say(str(exc))
        settled = lib.wait_actions_settled(stack.url, hook, 180)
        rows = lib.fetch(stack.url, "SELECT status, count(*), coalesce(sum(cost_usd), 0), "
                                    "coalesce(sum(tokens_in + tokens_out), 0) FROM triage.llm_calls GROUP BY status")
        spent = float(sum(r[2] for r in rows))
        handled = sum(int(r[1]) for r in rows)
        by_status = {r[0]: int(r[1]) for r in rows}
        drafts = lib.scalar(stack.url, "SELECT count(DISTINCT ticket_id) FROM triage.llm_calls")
        lost = n_decisions - drafts
        workers_used = sum(1 for p in (a, b) if "draft" in p.log_text() or p.alive())
        checks = {"spend_within_budget": spent <= budget_usd + 1e-9, "budget_reached": by_status.get("ok", 0) > 0
                  and handled > by_status.get("ok", 0), "every_decision_handled": lost == 0,
                  "actions_settled": settled, "both_alive": a.alive() and b.alive()}
        return ScenarioResult(scenario="7 budget, two drafting workers", tickets_in=n_decisions, decisions=drafts,
                              dlq=0,
                       effects=len(hook.effects), duplicates=max(0, handled - drafts), lost=lost,
                       passed=all(checks.values()),
                       details={"checks": checks, "budget_usd": budget_usd, "spent_usd": round(spent, 6),
                                "llm_calls": by_status, "llm_requests": len(llm.requests),
                                "workers": workers_used})
