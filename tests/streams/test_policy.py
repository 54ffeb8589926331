"""The routing policy: decisions, line-precise validation errors, and hot reload that refuses bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triage.policy import Facts, PolicyError, PolicyWatcher, RoutingPolicy, bind, decide, parse_policy
from triage.schemas import HeadPrediction, LabelScore
from triage.settings import PROJECT_ROOT
from triage.taxonomy import Taxonomy, bank

TEXT = (PROJECT_ROOT / "workspaces" / "bank" / "policy.yaml").read_text()
BANK = [("champion model triage-classifier v1", bank())]


def bound(text: str, source: str = "<memory>") -> RoutingPolicy:
    """The policy as the worker runs it: parsed, then checked against the acting model's taxonomy."""
    return bind(parse_policy(text, source), BANK)


POLICY = bound(TEXT)


def head(label: str, conf: float, abstained: bool = False) -> HeadPrediction:
    return HeadPrediction(label=label, confidence=conf, top_k=[LabelScore(label=label, score=conf)],
                          abstained=abstained)


def facts(intent: str, conf: float, urgency: str = "normal", **kw: object) -> Facts:
    return Facts(channel="email", intent=head(intent, conf, bool(kw.pop("abstained", False))),
                 urgency=head(urgency, 0.9), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("f", "route", "rule"), [
    (facts("card_arrival", 0.95), "auto_resolve", "auto-resolve-confident"),
    (facts("card_arrival", 0.86), "auto_resolve", "auto-resolve-confident"),  # per-intent threshold 0.85
    (facts("transfer_failed", 0.86), "draft_for_review", "draft-when-fairly-sure"),  # default 0.90
    (facts("card_arrival", 0.95, "high"), "draft_for_review", "draft-when-fairly-sure"),
    (facts("card_arrival", 0.95, "critical"), "escalate", "escalate-critical"),
    (facts("fraud_report", 0.99, "high"), "escalate", "escalate-fraud-or-lost-card"),
    (facts("fraud_report", 0.99, "low"), "human_queue", "denied-to-human"),
    (facts("card_arrival", 0.99, abstained=True), "human_queue", "abstain-to-human"),
    (facts("card_arrival", 0.30), "human_queue", "fallback-human"),
    (facts("card_arrival", 0.99, pii_failed=True), "human_queue", "builtin:pii-mask-failed"),
    (facts("card_arrival", 0.99, no_model=True), "human_queue", "builtin:no-model"),
])
def test_routes(f: Facts, route: str, rule: str) -> None:
    v = decide(POLICY, f)
    assert (v.route, v.rule_id) == (route, rule)


def test_deny_list_wins_over_rule_order() -> None:
    text = TEXT.replace("rules:\n", "rules:\n  - id: automate-everything\n    route: auto_resolve\n", 1)
    p = bound(text)
    assert decide(p, facts("card_arrival", 0.1)).rule_id == "automate-everything"
    v = decide(p, facts("close_account", 0.99))
    assert v.route == "human_queue"


def _line_of(text: str, needle: str) -> int:
    """1-based number of the last line containing `needle` (the changed one in these tests)."""
    return max(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(("old", "new", "needle", "words"), [
    ("urgency: [critical]}", "urgency: [critcal]}", "critcal", "unknown urgency"),
    ("route: draft_for_review\n", "route: draft\n", "route: draft", "route"),
    ("card_arrival: {auto_resolve: 0.85}", "card_arrival: {auto_resolve: 1.85}", "1.85", "auto_resolve"),
    ("intent: [fraud_report,", "intent: [fraud_reports,", "fraud_reports",
     "unknown intent 'fraud_reports' (did you mean 'fraud_report'?)"),
    ("    loan_inquiry:", "    loan_inqury:", "loan_inqury", "unknown intent"),
    ("  - id: denied-to-human", "  - id: escalate-critical", "id: escalate-critical", "used twice"),
    ("    when: {abstained: true}", "    when: {abstained: true, colour: red}", "colour", "colour"),
    ("route: escalate\n    reason: money", "route: escalate\n    route: escalate\n    reason: money",
     "route: escalate", "appears twice"),
])
def test_errors_name_the_line(old: str, new: str, needle: str, words: str) -> None:
    assert old in TEXT
    bad = TEXT.replace(old, new, 1)
    line = _line_of(bad, needle)
    with pytest.raises(PolicyError) as info:
        bound(bad, "policy.yaml")
    msg = str(info.value)
    assert f"policy.yaml: line {line}:" in msg, msg
    assert words in msg


def test_yaml_syntax_error_names_the_line() -> None:
    bad = TEXT.replace("thresholds:\n", "thresholds: [\n", 1)
    with pytest.raises(PolicyError, match=r"line \d+: YAML syntax error"):
        parse_policy(bad, "p.yaml")
    with pytest.raises(PolicyError, match="line 1: the policy must be a YAML mapping"):
        parse_policy("- just a list\n", "p.yaml")


def test_watcher_reloads_good_files_and_refuses_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(TEXT)
    w = PolicyWatcher(path)
    first = w.current.version
    assert w.check() is None

    def write(text: str, bump: int) -> None:
        path.write_text(text)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))

    write(TEXT.replace('version: "2026.12.1"', 'version: "2026.12.2"'), 10**9)
    assert w.check() is True and w.current.version.startswith("2026.12.2@") and w.error is None
    second = w.current.version
    assert second != first

    bad = TEXT.replace("route: escalate\n", "route: escalate_now\n", 1)
    write(bad, 2 * 10**9)
    assert w.check() is False
    assert w.current.version == second
    assert w.error is not None and f"line {_line_of(bad, 'escalate_now')}" in w.error and second in w.error
    assert w.check() is None  # unchanged file: no repeated work

    path.unlink()
    assert w.check() is False and "cannot read" in (w.error or "") and w.current.version == second


def test_hostile_files_are_policy_errors_not_crashes(tmp_path: Path) -> None:
    """Found by the chaos fuzzer: control characters, a list as a rule id, a file that is not UTF-8."""
    with pytest.raises(PolicyError, match=r"line 2: character U\+0004 is not allowed in YAML"):
        parse_policy("version: x\nrules: \x04\n", "p.yaml")
    bad_id = TEXT.replace("- id: ", "- id: [a, b]\n    note: ", 1)
    with pytest.raises(PolicyError, match=r"line \d+: rules\.0\.id"):
        parse_policy(bad_id, "p.yaml")
    path = tmp_path / "policy.yaml"
    path.write_text(TEXT)
    w = PolicyWatcher(path)
    before = w.current.version
    path.write_bytes(TEXT.encode().replace(b"version", b"\xff\xfeversion", 1))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert w.check() is False
    assert "not UTF-8" in (w.error or "") and w.current.version == before


SUPPORT_DESK = Taxonomy(name="saas-desk", urgencies=["low", "high"],
                        intents={"billing": {}, "login_problem": {}, "bug_report": {"automate": False}})
DESK_POLICY = """
version: "1"
thresholds:
  default: {auto_resolve: 0.9, draft_for_review: 0.6}
  intents:
    billing: {auto_resolve: 0.8}
rules:
  - id: escalate-high-bugs
    when: {intent: [bug_report], urgency: [high]}
    route: escalate
  - id: auto
    when: {confidence_at_least: auto_resolve}
    route: auto_resolve
default: {id: fallback, route: human_queue}
"""


def test_a_teams_own_intents_need_no_code() -> None:
    """Labels are the taxonomy's: a SaaS desk's policy binds to its taxonomy, `automate: false` is denied."""
    p = bind(parse_policy(DESK_POLICY, "desk.yaml"), [("champion model desk v1", SUPPORT_DESK)])
    assert p.denied == {"bug_report"}
    assert decide(p, facts("billing", 0.85)).route == "auto_resolve"
    assert decide(p, facts("bug_report", 0.99, "low")).route == "human_queue"  # never automated
    # The same file against the bank's taxonomy: refused with the line of the first unknown label.
    with pytest.raises(PolicyError) as info:
        bind(parse_policy(DESK_POLICY, "desk.yaml"), BANK)
    msg = str(info.value)
    assert msg.startswith(f"desk.yaml: line {_line_of(DESK_POLICY, 'billing: {auto_resolve')}: ")
    assert "unknown intent 'billing'" in msg and "champion model triage-classifier v1 knows: card_arrival" in msg
    assert "edit the policy" in msg


def test_a_model_without_an_urgency_head_refuses_urgency_rules() -> None:
    flat = SUPPORT_DESK.model_copy(update={"urgencies": []})
    with pytest.raises(PolicyError, match=r"desk.yaml: line 9: rules.0.when.urgency.0: .* has no urgency head"):
        bind(parse_policy(DESK_POLICY, "desk.yaml"), [("model desk v2", flat)])


def test_watcher_refuses_new_models_and_files_that_break_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DESK_POLICY)
    w = PolicyWatcher(path, [("champion model desk v1", SUPPORT_DESK)])
    before = w.current
    # New models whose taxonomy lacks the policy's labels: refused, nothing changes.
    assert w.fits(BANK) is not None and "unknown intent 'billing'" in (w.fits(BANK) or "")
    assert w.rebind(BANK) is not None and w.current is before
    # A file naming an intent the champion does not know: refused, the old policy keeps running.
    path.write_text(DESK_POLICY.replace("intent: [bug_report]", "intent: [bug_reports]"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert w.check() is False and "unknown intent 'bug_reports'" in (w.error or "") and w.current is before
    # A taxonomy that keeps the labels and adds one: accepted.
    more = {**SUPPORT_DESK.intents, "refund": SUPPORT_DESK.intents["billing"]}
    grown = SUPPORT_DESK.model_copy(update={"intents": more})
    path.write_text(DESK_POLICY)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert w.check() is None or w.error is None
    assert w.rebind([("champion model desk v2", grown)]) is None and "desk v2" in w.current.bound_to[0]
