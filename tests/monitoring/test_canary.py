"""Canary comparison: the verdict rules (on the mSPRT of lifecycle.sequential), live numbers per arm, registry steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from lifecycle import canary
from lifecycle.canary import ArmStats, CanaryThresholds, decide
from ml import registry
from tests.support import fixtures
from tests.support.lifecycle import MODEL, seed_arms, seed_decisions, settings_for
from triage import db
from triage.policy import RULE_PII_FAILED
from triage.schemas import Deployment

LIMITS = CanaryThresholds(min_feedback=100, alpha=0.05, latency_tolerance=0.1, timeout=timedelta(hours=72))


def arm(arm: str, version: int, n: int, agree: int, *, overrides: int | None = None, errors: int = 0,
        abstained: int = 0, p95: float | None = 10.0) -> ArmStats:
    return ArmStats(arm=arm, version=version, decisions=n, labelled=n, judged=n, agree=agree,
                    overrides=n - agree if overrides is None else overrides, abstained=abstained, errors=errors,
                    p95_latency_ms=p95)


# ---- the verdict ------------------------------------------------------------------------------------------------


def test_waits_for_feedback_then_rolls_back_at_the_timeout() -> None:
    champ, chal = arm("champion", 1, 90, 60), arm("canary", 2, 40, 39)
    v = decide(champ, chal, thresholds=LIMITS, elapsed=timedelta(hours=1), percent=5)
    assert v.action == "wait" and "40 challenger and 90 champion" in v.reason and "100 each needed" in v.reason
    late = decide(champ, chal, thresholds=LIMITS, elapsed=timedelta(hours=72), percent=5)
    assert late.action == "rollback" and late.reason.startswith("timed out")


def test_promotes_when_significantly_better_and_not_slower() -> None:
    v = decide(arm("champion", 1, 400, 280), arm("canary", 2, 400, 320), thresholds=LIMITS, elapsed=timedelta(hours=5),
               percent=5)
    assert v.action == "promote", v.reason
    assert "80.00% vs 70.00%" in v.reason
    assert "mSPRT log LR 3.92 >= 3.00, always-valid p=0.0198 <= 0.05, n=400/400" in v.reason
    assert v.numbers["challenger"]["agreement"] == 0.8 and v.numbers["champion"]["override_rate"] == 0.3
    assert (v.numbers["test"], v.numbers["tau"], v.numbers["alpha"]) == ("mSPRT", 0.05, 0.05)
    agreement = v.numbers["tests"]["agreement"]
    assert agreement["p_greater"] < 0.05 and agreement["llr_greater"] >= v.numbers["llr_threshold"]
    assert agreement["p_less"] == 1.0 and (agreement["n_champion"], agreement["n_challenger"]) == (400, 400)
    assert set(v.numbers["tests"]) == {"agreement", "override_rate", "abstention_rate", "error_rate"}


def test_a_difference_a_fixed_horizon_z_test_would_call_is_not_yet_evidence() -> None:
    # 80 % vs 72 % of 400 each: z = 2.65 (p = 0.004), significant at one look; the mixture asks for more
    # because the sensor looks again and again, and promotes once the same rates hold on 800 labels.
    champ, chal = arm("champion", 1, 400, 288), arm("canary", 2, 400, 320)
    v = decide(champ, chal, thresholds=LIMITS, elapsed=timedelta(hours=5), percent=5)
    assert v.action == "wait" and "no significant difference yet" in v.reason
    assert 0.05 < v.numbers["tests"]["agreement"]["p_greater"] < 0.2
    later = decide(arm("champion", 1, 800, 576), arm("canary", 2, 800, 640), thresholds=LIMITS,
                   elapsed=timedelta(hours=10), percent=5)
    assert later.action == "promote", later.reason
    wide = CanaryThresholds(min_feedback=100, tau=0.2)  # tuned to larger effects: 8 points on 400 is too small
    tuned = decide(champ, chal, thresholds=wide, elapsed=timedelta(hours=5), percent=5)
    assert tuned.action == "wait" and tuned.numbers["tau"] == 0.2


def test_rolls_back_when_significantly_worse() -> None:
    v = decide(arm("champion", 1, 400, 320), arm("canary", 2, 400, 280), thresholds=LIMITS, elapsed=timedelta(hours=5),
               percent=5)
    assert v.action == "rollback" and "agrees with humans less" in v.reason


def test_a_small_difference_waits_and_times_out() -> None:
    champ, chal = arm("champion", 1, 200, 150), arm("canary", 2, 200, 155)
    assert decide(champ, chal, thresholds=LIMITS, elapsed=timedelta(hours=5), percent=5).action == "wait"
    v = decide(champ, chal, thresholds=LIMITS, elapsed=timedelta(days=4), percent=5)
    assert v.action == "rollback" and "without showing the challenger better" in v.reason


def test_ramps_through_the_configured_steps_before_promoting() -> None:
    limits = CanaryThresholds(min_feedback=100, ramp=(25.0, 50.0))
    champ, chal = arm("champion", 1, 400, 280), arm("canary", 2, 400, 320)
    first = decide(champ, chal, thresholds=limits, elapsed=timedelta(hours=5), percent=5)
    assert first.action == "ramp" and first.next_percent == 25.0
    assert decide(champ, chal, thresholds=limits, elapsed=timedelta(hours=5), percent=25).next_percent == 50.0
    assert decide(champ, chal, thresholds=limits, elapsed=timedelta(hours=5), percent=50).action == "promote"
    shadow = decide(champ, chal, thresholds=limits, elapsed=timedelta(hours=5), percent=0, mode="shadow")
    assert shadow.action == "promote"


def test_latency_and_errors_roll_back_even_a_more_accurate_canary() -> None:
    champ = arm("champion", 1, 400, 280, p95=10.0)
    slow = decide(champ, arm("canary", 2, 400, 320, p95=11.5), thresholds=LIMITS, elapsed=timedelta(hours=5), percent=5)
    assert slow.action == "rollback" and "p95 inference latency 11.5 ms" in slow.reason
    within = decide(champ, arm("canary", 2, 400, 320, p95=10.9), thresholds=LIMITS, elapsed=timedelta(hours=5),
                    percent=5)
    assert within.action == "promote"
    failing = decide(champ, arm("canary", 2, 400, 320, errors=12), thresholds=LIMITS, elapsed=timedelta(minutes=5),
                     percent=5)
    assert failing.action == "rollback" and "error rate 3.00%" in failing.reason


def test_more_overrides_roll_back_and_unmeasured_latency_blocks_promotion() -> None:
    overridden = decide(arm("champion", 1, 400, 280, overrides=100), arm("canary", 2, 400, 290, overrides=160),
                        thresholds=LIMITS, elapsed=timedelta(hours=5), percent=5)
    assert overridden.action == "rollback" and "overridden more" in overridden.reason
    blind = decide(arm("champion", 1, 400, 280, p95=None), arm("canary", 2, 400, 320, p95=None), thresholds=LIMITS,
                   elapsed=timedelta(hours=5), percent=5)
    assert blind.action == "wait" and "latency is not measured" in blind.reason


def test_verdict_round_trips_through_xcom_json() -> None:
    import json

    v = decide(arm("champion", 1, 400, 280), arm("canary", 2, 400, 320), thresholds=LIMITS, elapsed=timedelta(hours=5),
               percent=5)
    assert canary.CanaryDecision.from_dict(json.loads(json.dumps(v.as_dict()))) == v


# ---- live numbers from the database -----------------------------------------------------------------------------

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def _decision(conn, tid: str, *, version: int, arm: str, intent: str | None, abstained: bool = False,
              inference_ms: float = 10.0, route: str = "human_queue", challenger: dict | None = None,
              mode: str | None = None, at: datetime = T0 + timedelta(minutes=5), rule: str = "r") -> None:
    conn.execute(
        "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name, model_version, "
        "arm, intent, urgency, abstained, prediction, challenger, challenger_mode, masked_text, inference_ms, "
        "received_at, decided_at) VALUES (%s,'chat',%s,%s,'v1',%s,%s,%s,%s,'normal',%s,'{}',%s,%s,'text',%s,%s,%s)",
        (tid, route, rule, MODEL, version, arm, intent, abstained, Jsonb(challenger) if challenger else None, mode,
         inference_ms, at, at))


def _feedback(conn, tid: str, kind: str, intent: str | None = None, urgency: str | None = None,
              at: datetime = T0 + timedelta(minutes=10), n: int = 1) -> None:
    conn.execute("INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, created_at) "
                 "VALUES (%s,%s,%s,%s,%s,%s)", (f"F{n}-{tid}", tid, kind, intent, urgency, at))


def _dep(mode: str) -> Deployment:
    return Deployment(id=1, name=MODEL, champion_version=1, challenger_version=2, mode=mode, percent=10,
                      started_at=T0, step_started_at=T0)


@pytest.mark.integration
def test_canary_arm_numbers_by_hand(db_url: str) -> None:
    _models(db_url)  # the champion's taxonomy names the out-of-scope label
    with db.connect(db_url) as conn:
        _decision(conn, "A1", version=1, arm="champion", intent="refund_request", inference_ms=10)
        _feedback(conn, "A1", "confirm")  # agrees
        _decision(conn, "A2", version=1, arm="champion", intent="refund_request", inference_ms=20)
        _feedback(conn, "A2", "correct", "dispute_charge")  # disagrees, override
        _decision(conn, "A3", version=1, arm="champion", intent="complaint", abstained=True, inference_ms=30)
        _feedback(conn, "A3", "correct", "out_of_scope")  # abstained on out-of-scope: agrees, but an override
        _decision(conn, "A4", version=1, arm="champion", intent="complaint", inference_ms=40)  # unlabelled
        _decision(conn, "A5", version=1, arm="champion", intent="fraud_report", route="escalate")
        _feedback(conn, "A5", "escalate")  # labelled, already escalated: no intent, no override
        _decision(conn, "B1", version=2, arm="canary", intent="card_arrival", inference_ms=50)
        _feedback(conn, "B1", "correct", "card_declined", n=1)
        _feedback(conn, "B1", "confirm", at=T0 + timedelta(minutes=20), n=2)  # latest wins for agreement
        _decision(conn, "B2", version=2, arm="canary", intent=None)  # canary error: classified, no intent
        # Withheld by the PII gate (never classified): no intent, and not the model's error.
        _decision(conn, "A6", version=1, arm="champion", intent=None, rule=RULE_PII_FAILED, inference_ms=10)
        _decision(conn, "B3", version=2, arm="canary", intent="card_arrival",
                  at=T0 - timedelta(minutes=1))  # before the deployment
        _decision(conn, "B4", version=3, arm="canary", intent="card_arrival")  # another version
        conn.commit()
    champ, chal = canary.arm_stats(db_url, _dep("canary"), T0 + timedelta(hours=1))
    assert (champ.decisions, champ.labelled, champ.judged, champ.agree, champ.overrides, champ.abstained) == (
        6, 4, 3, 2, 2, 1)
    assert champ.errors == 0 and champ.p95_latency_ms == pytest.approx(37.5)  # percentile_cont over 10,20,30,40,10,10
    assert (chal.decisions, chal.labelled, chal.judged, chal.agree, chal.overrides, chal.errors) == (2, 1, 1, 1, 1, 1)
    assert chal.version == 2 and chal.error_rate == 0.5


@pytest.mark.integration
def test_shadow_numbers_compare_both_models_on_the_same_tickets(db_url: str) -> None:
    _models(db_url)
    def pred(intent: str | None, urgency: str = "normal", abstained: bool = False) -> dict:
        heads = {} if intent is None else {"intent": {"label": intent, "abstained": abstained},
                                           "urgency": {"label": urgency}}
        return {"model_name": MODEL, "model_version": 2, "heads": heads}

    with db.connect(db_url) as conn:
        _decision(conn, "S1", version=1, arm="champion", intent="refund_request", challenger=pred("dispute_charge"),
                  mode="shadow")
        _feedback(conn, "S1", "correct", "dispute_charge", "normal")  # shadow right, champion wrong
        _decision(conn, "S2", version=1, arm="champion", intent="complaint", challenger=pred("complaint", "high"),
                  mode="shadow")
        _feedback(conn, "S2", "confirm")  # both intents right; shadow's urgency differs: would be overridden
        _decision(conn, "S3", version=1, arm="champion", intent="complaint", challenger=pred(None), mode="shadow")
        _decision(conn, "S4", version=1, arm="champion", intent="complaint",
                  challenger=pred("complaint", abstained=True), mode="shadow")
        conn.commit()
    champ, shadow = canary.arm_stats(db_url, _dep("shadow"), T0 + timedelta(hours=1))
    assert (champ.decisions, champ.judged, champ.agree, champ.overrides, champ.errors) == (4, 2, 1, 1, 0)
    assert (shadow.decisions, shadow.judged, shadow.agree, shadow.overrides, shadow.errors, shadow.abstained) == (
        4, 2, 2, 1, 1, 1)
    # The champion's time is inference_ms; these rows carry no shadow time (as rows stored before it was).
    assert champ.p95_latency_ms == 10.0 and shadow.p95_latency_ms is None


# ---- steps in the registry --------------------------------------------------------------------------------------


def _models(url: str) -> None:
    """Champion v1 and candidate v2, both of the bank's taxonomy."""
    assert fixtures.MODEL == MODEL
    fixtures.register_models(url, {1: "champion", 2: "candidate"})


def _backdate(url: str, hours: float) -> datetime:
    with db.connect(url) as conn:
        row = conn.execute("UPDATE triage.deployments SET started_at = now() - make_interval(secs => %s), "
                           "step_started_at = now() - make_interval(secs => %s) "
                           "WHERE status = 'active' RETURNING started_at", (hours * 3600, hours * 3600)).fetchone()
    return row["started_at"]


def _statuses(url: str) -> dict[int, str]:
    with db.connect(url) as conn:
        return {r["version"]: r["status"] for r in conn.execute("SELECT version, status FROM triage.model_versions")}


@pytest.mark.integration
@pytest.mark.parametrize(("chal_accuracy", "outcome", "statuses"), [
    (0.9, "promoted", {1: "retired", 2: "champion"}),
    (0.45, "rolled_back", {1: "champion", 2: "rejected"}),
])
def test_step_promotes_or_rolls_back_and_records_the_numbers(db_url: str, tmp_path: Path, chal_accuracy: float,
                                                             outcome: str, statuses: dict[int, str]) -> None:
    _models(db_url)
    settings = settings_for(db_url, tmp_path, canary_min_feedback="150")
    dep = canary.start(settings, canary.pick_candidate(settings), changed_by="test")
    assert (dep.challenger_version, dep.mode, dep.percent) == (2, "canary", 5.0)
    assert canary.start(settings, 2, changed_by="test").id == dep.id  # idempotent
    started = _backdate(db_url, 3)
    now = datetime.now(UTC)
    seed_arms(db_url, started, now - timedelta(minutes=5), 200, champion=(1, 0.7), challenger=(2, chal_accuracy),
              seed=7)
    state, verdict = canary.step(settings, now=now, changed_by="test")
    assert state == outcome, verdict
    assert _statuses(db_url) == statuses
    with db.connect(db_url) as conn:
        ev = conn.execute("SELECT reason, details FROM triage.model_events WHERE version = 2 AND details ? 'step' "
                          "ORDER BY id").fetchall()
        dep_row = conn.execute("SELECT status, reason FROM triage.deployments").fetchone()
    assert [e["details"]["step"] for e in ev] == ["start", "promote" if outcome == "promoted" else "rollback"]
    numbers = ev[-1]["details"]
    assert numbers["challenger"]["judged"] == 200 and numbers["champion"]["judged"] == 200
    assert numbers["test"] == "mSPRT" and numbers["tests"]["agreement"]["n_challenger"] == 200
    assert numbers["tests"]["agreement"]["llr_greater"] == pytest.approx(
        verdict.numbers["tests"]["agreement"]["llr_greater"])
    assert dep_row["status"] == outcome and dep_row["reason"] == verdict.reason
    assert canary.step(settings, now=now, changed_by="test") == ("none", None)


@pytest.mark.integration
def test_ramp_raises_the_share_in_place_and_restarts_the_comparison(db_url: str, tmp_path: Path) -> None:
    _models(db_url)
    settings = settings_for(db_url, tmp_path, canary_min_feedback="150", canary_ramp_steps="25,50")
    canary.start(settings, 2, changed_by="test")
    started = _backdate(db_url, 3)
    now = datetime.now(UTC)
    seed_arms(db_url, started, now - timedelta(minutes=5), 200, champion=(1, 0.7), challenger=(2, 0.9), seed=8)
    dep, verdict = canary.poll(settings, now=now, changed_by="test")
    assert verdict.action == "ramp" and verdict.next_percent == 25.0
    after = registry.active_deployment(db_url, MODEL)
    assert after.percent == 25.0 and after.id == dep.id, "the same deployment, at the next share"
    assert after.started_at == started and after.step_started_at > started
    assert _statuses(db_url) == {1: "champion", 2: "canary"}
    ramps = [e for e in registry.events(db_url, MODEL) if "to_percent" in (e["details"] or {})]
    assert [(e["details"]["from_percent"], e["details"]["to_percent"]) for e in ramps] == [(5.0, 25.0)]
    _, fresh = canary.poll(settings, now=datetime.now(UTC), changed_by="test")
    assert fresh.action == "wait"  # the evidence from 5% does not count for 25%
    registry.end_deployment(db_url, MODEL, "ended", "test")
    with pytest.raises(registry.RegistryError, match="no active deployment"):
        registry.set_percent(db_url, MODEL, 50.0, changed_by="test", reason="none")
    registry.start_deployment(db_url, MODEL, 2, "shadow", 0.0, changed_by="test", reason="shadow")
    with pytest.raises(registry.RegistryError, match="only a canary has a share"):
        registry.set_percent(db_url, MODEL, 50.0, changed_by="test", reason="no")


@pytest.mark.integration
def test_shadow_step_promotes_on_the_same_tickets(db_url: str, tmp_path: Path) -> None:
    _models(db_url)
    settings = settings_for(db_url, tmp_path, canary_min_feedback="150", canary_mode="shadow")
    canary.start(settings, 2, changed_by="test")
    started = _backdate(db_url, 3)
    now = datetime.now(UTC)
    seed_decisions(db_url, started, now - timedelta(minutes=5), 250, seed=9, accuracy=0.65, shadow=(2, 0.9))
    state, verdict = canary.step(settings, now=now, changed_by="test")
    assert state == "promoted", verdict.reason
    assert verdict.numbers["mode"] == "shadow" and verdict.numbers["challenger"]["decisions"] == 250
    assert _statuses(db_url) == {1: "retired", 2: "champion"}


@pytest.mark.integration
def test_a_slower_shadow_is_rolled_back_on_its_own_inference_time(db_url: str, tmp_path: Path) -> None:
    _models(db_url)
    settings = settings_for(db_url, tmp_path, canary_min_feedback="150", canary_mode="shadow")
    canary.start(settings, 2, changed_by="test")
    started = _backdate(db_url, 3)
    now = datetime.now(UTC)
    seed_decisions(db_url, started, now - timedelta(minutes=5), 250, seed=10, accuracy=0.65, shadow=(2, 0.9),
                   latency_ms=10.0, shadow_latency_ms=20.0)
    state, verdict = canary.step(settings, now=now, changed_by="test")
    assert state == "rolled_back", verdict.reason
    assert "p95 inference latency" in verdict.reason
    champ, chal = verdict.numbers["champion"]["p95_latency_ms"], verdict.numbers["challenger"]["p95_latency_ms"]
    assert 10.0 < champ <= 12.0 and 20.0 < chal <= 24.0
    assert _statuses(db_url) == {1: "champion", 2: "rejected"}


@pytest.mark.integration
def test_stop_if_active_ends_only_the_named_deployment(db_url: str, tmp_path: Path) -> None:
    _models(db_url)
    settings = settings_for(db_url, tmp_path)
    assert canary.stop_if_active(settings, 2, reason="run failed", changed_by="test") is False
    canary.start(settings, 2, changed_by="test")
    assert canary.stop_if_active(settings, 3, reason="run failed", changed_by="test") is False
    assert registry.active_deployment(db_url, MODEL) is not None
    assert canary.stop_if_active(settings, 2, reason="run failed", changed_by="test") is True
    assert registry.active_deployment(db_url, MODEL) is None and _statuses(db_url) == {1: "champion", 2: "candidate"}
    with db.connect(db_url) as conn:
        row = conn.execute("SELECT status, reason FROM triage.deployments").fetchone()
    assert (row["status"], row["reason"]) == ("ended", "run failed")


def test_pick_candidate_names_the_fix_when_there_is_none(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, tmp_path)
    with pytest.raises(canary.CanaryError, match="no candidate newer than the champion v0"):
        canary.pick_candidate(settings)
    assert canary.pick_candidate(settings, 7) == 7


@pytest.mark.integration
def test_cli_starts_shows_and_stops_a_canary(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from apps.cli import main
    from triage.settings import get_settings

    _models(db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TRIAGE_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["canary", "status"]) == 0
        assert "no active deployment" in capsys.readouterr().out
        assert main(["canary", "start", "--percent", "20"]) == 0
        assert "canary of triage-classifier v2 beside champion v1 at 20%" in capsys.readouterr().out
        assert main(["canary", "start", "--version", "1"]) == 1
        assert "version 1 is champion; only a candidate can be deployed" in capsys.readouterr().err
        assert main(["canary", "status"]) == 0
        out = capsys.readouterr().out
        assert "challenger v2: 0 decisions" in out and "verdict now: wait" in out
        assert main(["canary", "stop", "--reject", "--reason", "bad reviews"]) == 0
        assert "rolled_back (bad reviews)" in capsys.readouterr().out
        assert _statuses(db_url) == {1: "champion", 2: "rejected"}
    finally:
        get_settings.cache_clear()
