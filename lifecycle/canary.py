"""Live comparison of the champion and a challenger, and the verdict: promote, ramp, wait or roll back.

Canary mode compares the two arms of `triage.decisions` (each ticket answered by the model that
acted on it); shadow mode compares both models on the same tickets (the champion's prediction
against the shadow's, kept in `challenger`). Per arm: agreement with the human label (the latest
feedback; a confirmation keeps the decision's label; abstaining on an out-of-scope ticket agrees),
override rate (as the dbt marts define it: a reviewer changed the intent, urgency or route, rerouted,
or escalated a ticket the policy had not; in shadow mode, for both models: the human label differs
from the model's), abstention rate, error rate (the acting model gave no intent for a ticket that was
classified: not one withheld by the PII gate or decided with no model) and, in canary mode, p95
inference latency (each arm's time on its own sub-batch: the worker runs each model only on its own
arm's tickets).

The sensor looks every few minutes and acts on the first significant look, so proportions are
compared with an anytime-valid test (`lifecycle.sequential`: a one-sided mixture SPRT in each
direction, computed on the window's cumulative counts at each look, rejecting when the likelihood
ratio reaches 1/alpha); its false-positive rate holds at `alpha` however often it is checked, where
a repeated z-test's does not (`make bench-canary` measures both).

CanaryDecision, in order: roll back when the challenger's error rate is significantly higher, its p95
latency exceeds the champion's by more than the tolerance, or (once each arm has `min_feedback`
labelled decisions) its agreement is significantly lower or its override rate significantly
higher; promote (or ramp to the next step first) when its agreement is significantly higher;
otherwise wait, and roll back at the timeout. Each step's numbers (the test, tau, alpha, each
metric's log-likelihood ratios, always-valid p-values and sample sizes) are written to the registry.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from lifecycle.sequential import DEFAULT_TAU, MixtureSPRT, msprt_two_proportions, threshold
from ml import registry
from triage import db
from triage.errors import TriageError
from triage.names import T_DECISIONS, V_LABELLED_DECISIONS, qualified
from triage.policy import RULE_NO_MODEL, RULE_PII_FAILED
from triage.schemas import Deployment
from triage.settings import Settings

log = logging.getLogger(__name__)

Action = Literal["promote", "ramp", "wait", "rollback"]

# The decisions of one deployment window with their production labels and overrides, as the view
# that defines them says (the latest feedback decides; a confirmation keeps the decision's label).
_LABELLED = f"""
WITH d AS (
    SELECT d.*, l.feedback_kind AS fb_kind, l.label_intent AS human_intent, l.label_urgency AS human_urgency,
           coalesce(l.is_overridden, false) AS overridden
    FROM {qualified(T_DECISIONS)} d
    LEFT JOIN {qualified(V_LABELLED_DECISIONS)} l ON l.ticket_id = d.ticket_id
    WHERE d.model_name = %(name)s AND d.decided_at >= %(start)s AND d.decided_at < %(end)s
)
"""
# A person's out-of-scope label agrees with an abstention (the champion's taxonomy names that label).
_AGREE = "(human_intent = {p} OR (human_intent = %(ood)s AND {a}))"
CANARY_SQL = _LABELLED + f"""
SELECT arm, model_version AS version, count(*) AS decisions,
       count(fb_kind) AS labelled,
       count(*) FILTER (WHERE human_intent IS NOT NULL) AS judged,
       count(*) FILTER (WHERE {_AGREE.format(p="intent", a="abstained")}) AS agree,
       count(*) FILTER (WHERE overridden) AS overrides,
       count(*) FILTER (WHERE abstained) AS abstained,
       count(*) FILTER (WHERE intent IS NULL AND rule_id NOT IN (%(rule_pii)s, %(rule_no_model)s)) AS errors,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY inference_ms) AS p95_latency_ms
FROM d
WHERE (arm = 'champion' AND model_version = %(champion)s) OR (arm = 'canary' AND model_version = %(challenger)s)
GROUP BY arm, model_version
"""
_SHADOW_ROWS = _LABELLED + """
, s AS (
    SELECT *, challenger -> 'heads' -> 'intent' ->> 'label' AS c_intent,
           challenger -> 'heads' -> 'urgency' ->> 'label' AS c_urgency,
           coalesce((challenger -> 'heads' -> 'intent' ->> 'abstained')::boolean, false) AS c_abstained
    FROM d
    WHERE challenger_mode = 'shadow' AND model_version = %(champion)s
      AND (challenger ->> 'model_version')::int = %(challenger)s
)
"""


def _shadow_arm(arm: str, intent: str, urgency: str, abstained: str, other: str, latency: str) -> str:
    agree = _AGREE.format(p=intent, a=abstained)
    override = (f"(human_intent IS NOT NULL AND human_intent IS DISTINCT FROM {intent}) OR "
                f"(human_urgency IS NOT NULL AND human_urgency IS DISTINCT FROM {urgency})")
    return (f"SELECT '{arm}' AS arm, count(*) AS decisions, count(fb_kind) AS labelled, "
            "count(*) FILTER (WHERE human_intent IS NOT NULL) AS judged, "
            f"count(*) FILTER (WHERE {agree}) AS agree, "
            f"count(*) FILTER (WHERE fb_kind IS NOT NULL AND ({override})) AS overrides, "
            f"count(*) FILTER (WHERE {abstained}) AS abstained, "
            f"count(*) FILTER (WHERE {intent} IS NULL AND {other} IS NOT NULL) AS errors, "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {latency}) AS p95_latency_ms FROM s")


# Both models ran on the same batches: the champion's time is `inference_ms`, the shadow's is kept
# beside it in `latency_ms` (NULL for decisions stored before it was, which percentile_cont skips).
SHADOW_SQL = (_SHADOW_ROWS + _shadow_arm("champion", "intent", "urgency", "abstained", "c_intent", "inference_ms")
              + " UNION ALL " + _shadow_arm("canary", "c_intent", "c_urgency", "c_abstained", "intent",
                                            "(latency_ms ->> 'challenger_inference')::double precision"))


class CanaryError(TriageError, RuntimeError):
    """The deployment is not in the state a step expects; the message says what changed and what to do."""


@dataclass(frozen=True)
class ArmStats:
    """One arm's live numbers over a deployment window."""

    arm: str
    version: int
    decisions: int = 0
    labelled: int = 0
    judged: int = 0
    agree: int = 0
    overrides: int = 0
    abstained: int = 0
    errors: int = 0
    p95_latency_ms: float | None = None

    @property
    def agreement(self) -> float | None:
        return self.agree / self.judged if self.judged else None

    @property
    def override_rate(self) -> float | None:
        return self.overrides / self.labelled if self.labelled else None

    @property
    def abstention_rate(self) -> float | None:
        return self.abstained / self.decisions if self.decisions else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.decisions if self.decisions else None

    def numbers(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("agreement", "override_rate", "abstention_rate", "error_rate"):
            v = getattr(self, k)
            out[k] = None if v is None else round(v, 4)
        return out


@dataclass(frozen=True)
class CanaryThresholds:
    """The verdict's limits; `alpha` and `tau` parametrise the mSPRT (`lifecycle.sequential`)."""

    min_feedback: int = 200
    alpha: float = 0.05
    latency_tolerance: float = 0.10
    timeout: timedelta = timedelta(hours=72)
    ramp: tuple[float, ...] = ()
    tau: float = DEFAULT_TAU

    @classmethod
    def from_settings(cls, s: Settings) -> CanaryThresholds:
        return cls(min_feedback=s.canary_min_feedback, alpha=s.canary_alpha,
                   latency_tolerance=s.canary_latency_tolerance, timeout=timedelta(hours=s.canary_timeout_hours),
                   ramp=s.canary_ramp)


@dataclass(frozen=True)
class CanaryDecision:
    action: Action
    reason: str
    next_percent: float | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CanaryDecision:
        return cls(action=d["action"], reason=d["reason"], next_percent=d.get("next_percent"),
                   numbers=d.get("numbers") or {})


def _test(champion: ArmStats, challenger: ArmStats, x: str, n: str, tau: float) -> MixtureSPRT:
    return msprt_two_proportions(getattr(champion, x), getattr(champion, n), getattr(challenger, x),
                                 getattr(challenger, n), tau=tau)


def _record_of(t: MixtureSPRT) -> dict[str, Any]:
    return {"diff": round(t.diff, 4), "n_champion": t.n1, "n_challenger": t.n2,
            "llr_greater": round(t.llr_greater, 4), "llr_less": round(t.llr_less, 4),
            "p_greater": round(t.p_greater, 5), "p_less": round(t.p_less, 5)}


def _evidence(t: MixtureSPRT, llr: float, p: float, alpha: float) -> str:
    return f"mSPRT log LR {llr:.2f} >= {threshold(alpha):.2f}, always-valid p={p:.4f} <= {alpha}, n={t.n2}/{t.n1}"


def decide(champion: ArmStats, challenger: ArmStats, *, thresholds: CanaryThresholds, elapsed: timedelta,
           percent: float, mode: str = "canary") -> CanaryDecision:
    """The verdict on one comparison of the window's cumulative counts; pure, and valid at every look."""
    tau, alpha = thresholds.tau, thresholds.alpha
    bound = threshold(alpha)  # log(1/alpha): reject at the first look whose log-likelihood ratio reaches it
    tests = {"agreement": _test(champion, challenger, "agree", "judged", tau),
             "override_rate": _test(champion, challenger, "overrides", "labelled", tau),
             "abstention_rate": _test(champion, challenger, "abstained", "decisions", tau),
             "error_rate": _test(champion, challenger, "errors", "decisions", tau)}
    numbers: dict[str, Any] = {
        "mode": mode, "percent": percent, "elapsed_s": round(elapsed.total_seconds()),
        "champion": champion.numbers(), "challenger": challenger.numbers(),
        "test": "mSPRT", "tau": tau, "alpha": alpha, "llr_threshold": round(bound, 4),
        "tests": {k: _record_of(t) for k, t in tests.items()},
        "thresholds": {"min_feedback": thresholds.min_feedback, "alpha": alpha, "tau": tau,
                   "latency_tolerance": thresholds.latency_tolerance, "timeout_s": thresholds.timeout.total_seconds(),
                   "ramp": list(thresholds.ramp)},
    }

    def verdict(action: Action, reason: str, next_percent: float | None = None) -> CanaryDecision:
        return CanaryDecision(action, reason, next_percent, numbers)

    err = tests["error_rate"]
    if err.llr_greater >= bound and challenger.errors > 0:
        return verdict("rollback", f"challenger error rate {err.p2:.2%} vs champion {err.p1:.2%} "
                                   f"({_evidence(err, err.llr_greater, err.p_greater, alpha)})")
    enough_latency = min(champion.decisions, challenger.decisions) >= thresholds.min_feedback
    latency_ok = True
    if champion.p95_latency_ms is not None and challenger.p95_latency_ms is not None and enough_latency:
        limit = champion.p95_latency_ms * (1 + thresholds.latency_tolerance)
        numbers["latency_limit_ms"] = round(limit, 3)
        if challenger.p95_latency_ms > limit:
            return verdict("rollback", f"challenger p95 inference latency {challenger.p95_latency_ms:.1f} ms exceeds "
                                       f"champion {champion.p95_latency_ms:.1f} ms by more than "
                                       f"{thresholds.latency_tolerance:.0%}")
    elif mode == "canary":
        latency_ok = False  # not enough decisions to vouch for latency yet
    timed_out = elapsed >= thresholds.timeout
    judged = min(champion.judged, challenger.judged)
    if judged < thresholds.min_feedback:
        msg = (f"{challenger.judged} challenger and {champion.judged} champion decisions have human labels, "
               f"{thresholds.min_feedback} each needed")
        if timed_out:
            return verdict("rollback", f"timed out after {elapsed} waiting for feedback: {msg}")
        return verdict("wait", msg)
    agr, ovr = tests["agreement"], tests["override_rate"]
    if agr.llr_less >= bound:
        return verdict("rollback", f"challenger agrees with humans less: {agr.p2:.2%} vs {agr.p1:.2%} "
                                   f"({_evidence(agr, agr.llr_less, agr.p_less, alpha)})")
    if ovr.llr_greater >= bound:
        return verdict("rollback", f"challenger is overridden more: {ovr.p2:.2%} vs {ovr.p1:.2%} "
                                   f"({_evidence(ovr, ovr.llr_greater, ovr.p_greater, alpha)})")
    better = agr.llr_greater >= bound
    if better and latency_ok:
        evidence = (f"challenger agrees with humans more: {agr.p2:.2%} vs {agr.p1:.2%} "
                    f"({_evidence(agr, agr.llr_greater, agr.p_greater, alpha)})")
        if challenger.p95_latency_ms is not None and champion.p95_latency_ms is not None:
            evidence += (f", p95 latency {challenger.p95_latency_ms:.1f} vs {champion.p95_latency_ms:.1f} ms")
        nxt = next((p for p in thresholds.ramp if p > percent), None) if mode == "canary" else None
        if nxt is not None:
            return verdict("ramp", f"{evidence}; ramping from {percent:g}% to {nxt:g}%", nxt)
        return verdict("promote", evidence)
    if better:
        return verdict("wait", f"challenger agrees with humans more ({agr.p2:.2%} vs {agr.p1:.2%}) but its p95 "
                               "latency is not measured on enough decisions yet")
    msg = (f"no significant difference yet: agreement {agr.p2:.2%} vs {agr.p1:.2%} (mSPRT always-valid "
           f"p={agr.p_greater:.4f} for better, {agr.p_less:.4f} for worse, alpha {alpha})")
    if timed_out:
        return verdict("rollback", f"timed out after {elapsed} without showing the challenger better: {msg}")
    return verdict("wait", msg)


def arm_stats(url: str, dep: Deployment, end: datetime) -> tuple[ArmStats, ArmStats]:
    """(champion, challenger) numbers over the current step's window [step_started_at, end)."""
    sql = SHADOW_SQL if dep.mode == "shadow" else CANARY_SQL
    from ml import registry

    ood = registry.taxonomy_of(registry.get(url, dep.name, dep.champion_version)).out_of_scope
    params = {"name": dep.name, "start": _window_start(dep), "end": end, "champion": dep.champion_version,
              "challenger": dep.challenger_version, "ood": ood,
              "rule_pii": RULE_PII_FAILED, "rule_no_model": RULE_NO_MODEL}
    with db.connect(url) as conn:
        rows = {r["arm"]: r for r in conn.execute(sql, params).fetchall()}

    def build(arm: str, version: int) -> ArmStats:
        r = rows.get(arm)
        if r is None:
            return ArmStats(arm=arm, version=version)
        p95 = r["p95_latency_ms"]
        return ArmStats(arm=arm, version=version, decisions=int(r["decisions"]), labelled=int(r["labelled"]),
                        judged=int(r["judged"]), agree=int(r["agree"]), overrides=int(r["overrides"]),
                        abstained=int(r["abstained"]), errors=int(r["errors"]),
                        p95_latency_ms=None if p95 is None else float(p95))

    return build("champion", dep.champion_version), build("canary", dep.challenger_version)


def _record(url: str, name: str, version: int, reason: str, details: dict[str, Any], changed_by: str) -> None:
    registry.record_evaluation(url, name, version, reason=reason, details=details, changed_by=changed_by)


def _window_start(dep: Deployment) -> datetime:
    """When the deployment's current share began: each step is judged on its own decisions only."""
    start = dep.step_started_at or dep.started_at
    if start is None:
        raise CanaryError(f"deployment of {dep.name} v{dep.challenger_version} has no start time; "
                          "read it with ml.registry.active_deployment")
    return start


def pick_candidate(settings: Settings, requested: int | None = None) -> int:
    """The version to deploy: `requested`, else the newest candidate registered after the champion."""
    url, name = settings.db_url(), settings.model_name
    if requested is not None:
        return int(requested)
    champ = registry.champion(url, name)
    floor = champ.version if champ else 0
    newer = [mv.version for mv in registry.list_versions(url, name) if mv.status == "candidate" and mv.version > floor]
    if not newer:
        raise CanaryError(f"model {name} has no candidate newer than the champion v{floor}; "
                          "retrain (retrain_classifier) or pass a version")
    return max(newer)


def start(settings: Settings, version: int, *, mode: str | None = None, percent: float | None = None,
          changed_by: str, reason: str = "") -> Deployment:
    """Run `version` beside the champion (idempotent: an active deployment of the same version is kept)."""
    url, name = settings.db_url(), settings.model_name
    mode = mode or settings.canary_mode
    percent = settings.canary_start_percent if percent is None else percent
    current = registry.active_deployment(url, name)
    if current is not None and current.challenger_version == version:
        log.info("deployment of %s v%s already active (%s at %g%%)", name, version, current.mode, current.percent)
        return current
    why = reason or f"{mode} of v{version} at {percent:g}%"
    registry.start_deployment(url, name, version, mode, percent, changed_by=changed_by, reason=why)
    dep = registry.active_deployment(url, name)
    assert dep is not None
    _record(url, name, version, f"{mode} started at {percent:g}%", {"step": "start", "mode": mode, "percent": percent},
           changed_by)
    log.info("started %s of %s v%s at %g%%", mode, name, version, percent)
    return dep


def evaluate(settings: Settings, *, now: datetime) -> tuple[Deployment, CanaryDecision] | None:
    """The verdict on the active deployment of the settings' model, or None when none is active."""
    url = settings.db_url()
    dep = registry.active_deployment(url, settings.model_name)
    if dep is None:
        return None
    champion, challenger = arm_stats(url, dep, now)
    verdict = decide(champion, challenger, thresholds=CanaryThresholds.from_settings(settings),
                     elapsed=now - _window_start(dep), percent=dep.percent, mode=dep.mode)
    return dep, verdict


def apply(settings: Settings, dep: Deployment, verdict: CanaryDecision, *, changed_by: str) -> str:
    """Act on a verdict in the registry (numbers in model_events.details); returns the deployment's state."""
    url, name = settings.db_url(), settings.model_name
    log.info("%s v%s %s: %s", name, dep.challenger_version, verdict.action, verdict.reason)
    if verdict.action == "wait":
        return "active"
    details = {"step": verdict.action, "deployment_id": dep.id, **verdict.numbers}
    _record(url, name, dep.challenger_version, f"{dep.mode} verdict {verdict.action}: {verdict.reason}", details,
           changed_by)
    if verdict.action == "promote":
        registry.end_deployment(url, name, "promoted", verdict.reason, changed_by=changed_by)
        return "promoted"
    if verdict.action == "rollback":
        registry.end_deployment(url, name, "rolled_back", verdict.reason, changed_by=changed_by)
        return "rolled_back"
    assert verdict.next_percent is not None
    registry.set_percent(url, name, verdict.next_percent, changed_by=changed_by,
                         reason=f"ramped from {dep.percent:g}%: {verdict.reason}")
    log.info("ramped %s v%s from %g%% to %g%%", name, dep.challenger_version, dep.percent, verdict.next_percent)
    return "active"


def poll(settings: Settings, *, now: datetime, changed_by: str) -> tuple[Deployment | None, CanaryDecision | None]:
    """One check of the active deployment: ramps are applied here, promote/rollback left to `conclude`."""
    found = evaluate(settings, now=now)
    if found is None:
        return None, None
    dep, verdict = found
    if verdict.action == "ramp":
        apply(settings, dep, verdict, changed_by=changed_by)
    else:
        log.info("%s v%s at %g%%: %s (%s)", dep.name, dep.challenger_version, dep.percent, verdict.action,
                 verdict.reason)
    return dep, verdict


def conclude(settings: Settings, deployment_id: int, verdict: CanaryDecision, *, changed_by: str) -> str:
    """Apply a promote/rollback verdict to the deployment it was reached on; CanaryError if that one ended."""
    dep = registry.active_deployment(settings.db_url(), settings.model_name)
    if dep is None or dep.id != deployment_id:
        now = f"deployment {dep.id} of v{dep.challenger_version} is active" if dep else "none is active"
        raise CanaryError(f"deployment {deployment_id} is no longer active ({now}); nothing was changed")
    return apply(settings, dep, verdict, changed_by=changed_by)


def stop_if_active(settings: Settings, version: int, *, reason: str, changed_by: str) -> bool:
    """End a still-active deployment of `version` (the canary returns to candidate); True if one was ended."""
    url, name = settings.db_url(), settings.model_name
    dep = registry.active_deployment(url, name)
    if dep is None or dep.challenger_version != version:
        return False
    _record(url, name, version, f"{dep.mode} stopped: {reason}", {"step": "stop", "deployment_id": dep.id}, changed_by)
    registry.end_deployment(url, name, "ended", reason, changed_by=changed_by)
    log.warning("ended the %s of %s v%s: %s", dep.mode, name, version, reason)
    return True


def step(settings: Settings, *, now: datetime, changed_by: str) -> tuple[str, CanaryDecision | None]:
    """Evaluate the active deployment and act on any verdict; ('none', None) when nothing is deployed."""
    found = evaluate(settings, now=now)
    if found is None:
        return "none", None
    dep, verdict = found
    return apply(settings, dep, verdict, changed_by=changed_by), verdict
