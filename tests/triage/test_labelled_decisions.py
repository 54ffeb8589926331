"""The one definition of production labels and overrides: the view `triage.labelled_decisions`, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage import db
from triage.names import V_LABELLED_DECISIONS, qualified

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)

# ticket id, route, intent, urgency
DECISIONS = [
    ("confirmed", "auto_resolve", "refund_request", "low"),
    ("relabelled", "auto_resolve", "refund_request", "low"),
    ("urgency_fixed", "human_queue", "card_declined", "low"),
    ("rerouted", "draft_for_review", "complaint", "normal"),
    ("escalated_again", "escalate", "fraud_report", "critical"),
    ("newly_escalated", "human_queue", "fraud_report", "high"),
    ("unreviewed", "human_queue", "complaint", "normal"),
    ("abstained_then_labelled", "human_queue", None, None),
    ("corrected_then_confirmed", "auto_resolve", "refund_request", "low"),
]
# event id, ticket id, kind, intent, urgency, route, minutes after T0
FEEDBACK = [
    ("f1", "confirmed", "confirm", None, None, None, 0),
    ("f6", "confirmed", "confirm", None, None, None, 60),
    ("f2", "relabelled", "correct", "dispute_charge", "low", None, 0),
    ("f3", "urgency_fixed", "correct", "card_declined", "high", None, 0),
    ("f4", "rerouted", "reroute", None, None, "human_queue", 0),
    ("f5", "escalated_again", "escalate", None, None, "escalate", 0),
    ("f8", "newly_escalated", "escalate", None, None, "escalate", 0),
    ("f7", "abstained_then_labelled", "correct", "pin_blocked", None, None, 0),
    ("f9", "corrected_then_confirmed", "correct", "dispute_charge", None, None, 0),
    ("f10", "corrected_then_confirmed", "confirm", None, None, None, 30),
]


@pytest.fixture()
def labelled(db_url: str) -> dict[str, dict[str, object]]:
    with db.connect(db_url) as conn:
        for tid, route, intent, urgency in DECISIONS:
            conn.execute(
                "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name, "
                "model_version, intent, urgency, prediction, masked_text, received_at) "
                "VALUES (%s, 'email', %s, 'r1', 'v1', 'm', 1, %s, %s, '{}', 'text', %s)",
                (tid, route, intent, urgency, T0),
            )
        for event, tid, kind, intent, urgency, route, minutes in FEEDBACK:
            conn.execute(
                "INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, route, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (event, tid, kind, intent, urgency, route, T0 + timedelta(minutes=minutes)),
            )
        rows = conn.execute(f"SELECT * FROM {qualified(V_LABELLED_DECISIONS)}").fetchall()
    return {r["ticket_id"]: r for r in rows}


def test_only_reviewed_decisions_have_a_row(labelled: dict[str, dict[str, object]]) -> None:
    assert set(labelled) == {t[0] for t in DECISIONS} - {"unreviewed"}


@pytest.mark.parametrize(("ticket", "overridden"), [
    ("confirmed", False), ("relabelled", True), ("urgency_fixed", True), ("rerouted", True),
    ("escalated_again", False), ("newly_escalated", True), ("abstained_then_labelled", True),
    ("corrected_then_confirmed", True),
])
def test_override_rule(labelled: dict[str, dict[str, object]], ticket: str, overridden: bool) -> None:
    assert labelled[ticket]["is_overridden"] is overridden


def test_a_confirmation_keeps_the_decision_label(labelled: dict[str, dict[str, object]]) -> None:
    row = labelled["confirmed"]
    assert (row["label_intent"], row["label_urgency"], row["feedback_events"]) == ("refund_request", "low", 2)
    assert row["labelled_at"] == T0 + timedelta(minutes=60) and row["feedback_event_id"] == "f6"


def test_the_latest_event_decides_the_label(labelled: dict[str, dict[str, object]]) -> None:
    assert labelled["relabelled"]["label_intent"] == "dispute_charge"
    assert labelled["urgency_fixed"]["label_urgency"] == "high"
    assert labelled["abstained_then_labelled"]["label_intent"] == "pin_blocked"
    # corrected, then the reviewer confirmed the decision after all: the confirmation is the label
    assert labelled["corrected_then_confirmed"]["label_intent"] == "refund_request"


def test_routing_feedback_carries_no_intent_label(labelled: dict[str, dict[str, object]]) -> None:
    assert labelled["rerouted"]["label_intent"] is None
    assert labelled["rerouted"]["label_route"] == "human_queue"
