"""What the review console reads and writes in PostgreSQL: the queue, a ticket, claims and reviews.

The queue is `triage.work_queue` (rows the worker's outbox wrote for draft_for_review, human_queue and
escalate), one entry per ticket, with its decision, its live claim and its SLA deadline (the workspace
taxonomy's SLA for its intent or urgency, counted from the decision). A review is written once per key:
`prepare_review` checks it and builds the feedback event, the caller publishes the event on
`tickets.feedback` (the worker stores it as the production label), then `record_review` writes the review,
the reply action for the outbox, closes the queue entry and drops the claim in one transaction. A replay
of the same key finds the review and changes nothing; the event id is derived from the key, so a publish
repeated after a failed write is stored once by the worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from apps.console.users import User
from triage import db
from triage.errors import TriageError
from triage.labels import FEEDBACK_KINDS, ROUTES
from triage.names import T_ACTIONS, T_CLAIMS, T_DECISIONS, T_LLM_CALLS, T_REPLIES, T_REVIEWS, T_WORK_QUEUE, qualified
from triage.pii import mask
from triage.schemas import Feedback
from triage.taxonomy import Taxonomy

WQ, DEC, CLAIMS, REVIEWS = qualified(T_WORK_QUEUE), qualified(T_DECISIONS), qualified(T_CLAIMS), qualified(T_REVIEWS)
ACTIONS, REPLIES, LLM = qualified(T_ACTIONS), qualified(T_REPLIES), qualified(T_LLM_CALLS)
QUEUE_LIMIT = 500
MAX_REPLY_CHARS = 10_000

# One entry per ticket (its latest queue row), with the decision and the claim if it is still live.
_QUEUE_SQL = f"""
SELECT DISTINCT ON (q.ticket_id)
       q.ticket_id, q.route AS queue_route, q.payload, q.created_at AS queued_at,
       d.channel, d.route, d.intent, d.intent_confidence, d.urgency, d.urgency_confidence, d.abstained,
       d.decided_at, d.masked_text,
       CASE WHEN c.expires_at > now() THEN c.reviewer END AS claimed_by,
       CASE WHEN c.expires_at > now() THEN c.expires_at END AS claim_expires_at
FROM {WQ} q
JOIN {DEC} d ON d.ticket_id = q.ticket_id
LEFT JOIN {CLAIMS} c ON c.ticket_id = q.ticket_id
WHERE q.status <> 'done'
  AND NOT EXISTS (SELECT 1 FROM {REVIEWS} r WHERE r.ticket_id = q.ticket_id)
ORDER BY q.ticket_id, q.created_at DESC
LIMIT %(limit)s
"""
_TICKET_SQL = f"""
SELECT d.ticket_id, d.channel, d.route, d.rule_id, d.reason, d.policy_version, d.model_name, d.model_version,
       d.arm, d.intent, d.intent_confidence, d.urgency, d.urgency_confidence, d.abstained, d.prediction,
       d.masked_text, d.pii_counts, d.decided_at, d.draft_status, d.draft_route, d.draft_reason,
       q.payload, q.route AS queue_route, q.status AS queue_status, q.created_at AS queued_at,
       CASE WHEN c.expires_at > now() THEN c.reviewer END AS claimed_by,
       CASE WHEN c.expires_at > now() THEN c.expires_at END AS claim_expires_at,
       c.claimed_at
FROM {DEC} d
LEFT JOIN LATERAL (SELECT * FROM {WQ} w WHERE w.ticket_id = d.ticket_id ORDER BY w.created_at DESC LIMIT 1) q
       ON true
LEFT JOIN {CLAIMS} c ON c.ticket_id = d.ticket_id
WHERE d.ticket_id = %s
"""
_CLAIM_SQL = f"""
INSERT INTO {CLAIMS} (ticket_id, reviewer, expires_at) VALUES (%(t)s, %(r)s, now() + make_interval(mins => %(m)s))
ON CONFLICT (ticket_id) DO UPDATE SET reviewer = EXCLUDED.reviewer, expires_at = EXCLUDED.expires_at,
    claimed_at = CASE WHEN {CLAIMS}.reviewer = EXCLUDED.reviewer AND {CLAIMS}.expires_at > now()
                      THEN {CLAIMS}.claimed_at ELSE now() END
WHERE {CLAIMS}.reviewer = EXCLUDED.reviewer OR {CLAIMS}.expires_at <= now()
RETURNING reviewer, claimed_at, expires_at
"""


class ConsoleError(TriageError, ValueError):
    """A request the console refuses; `status` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def sla_deadline(taxonomy: Taxonomy, intent: str | None, urgency: str | None, since: datetime) -> datetime | None:
    minutes = taxonomy.sla(intent, urgency)
    return None if minutes is None else since + timedelta(minutes=minutes)


def _entry(row: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Any]:
    payload = row.get("payload") or {}
    draft = payload.get("draft") or None
    deadline = sla_deadline(taxonomy, row["intent"], row["urgency"], row["decided_at"])
    return {
        "ticket_id": row["ticket_id"],
        "route": row["queue_route"],
        "decided_route": row["route"],
        "channel": row["channel"],
        "intent": row["intent"],
        "intent_confidence": row["intent_confidence"],
        "urgency": row["urgency"],
        "abstained": row["abstained"],
        "decided_at": row["decided_at"].isoformat(),
        "sla_deadline": deadline.isoformat() if deadline else None,
        "claimed_by": row["claimed_by"],
        "claim_expires_at": row["claim_expires_at"].isoformat() if row["claim_expires_at"] else None,
        "has_draft": bool(draft and draft.get("text")),
        "draft": (draft or {}).get("text") or None,
        "preview": (row["masked_text"] or "")[:160],
    }


@dataclass(frozen=True)
class QueueFilter:
    route: str | None = None
    intent: str | None = None
    urgency: str | None = None
    channel: str | None = None
    claimed: str | None = None  # "yes", "no" or "mine"
    min_confidence: float | None = None
    max_confidence: float | None = None


def queue(url: str, taxonomy: Taxonomy, who: User, f: QueueFilter = QueueFilter()) -> list[dict[str, Any]]:
    """Open tickets, by SLA deadline (none last), then least confident first."""
    with db.connect(url) as conn:
        rows = conn.execute(_QUEUE_SQL, {"limit": QUEUE_LIMIT}).fetchall()
    out = []
    for row in rows:
        e = _entry(row, taxonomy)
        conf = e["intent_confidence"]
        if any(v is not None and e[k] != v for k, v in (("route", f.route), ("intent", f.intent),
                                                          ("urgency", f.urgency), ("channel", f.channel))):
            continue
        if f.claimed == "yes" and e["claimed_by"] is None or f.claimed == "no" and e["claimed_by"] is not None:
            continue
        if f.claimed == "mine" and e["claimed_by"] != who.name:
            continue
        if f.min_confidence is not None and (conf is None or conf < f.min_confidence):
            continue
        if f.max_confidence is not None and (conf is None or conf >= f.max_confidence):
            continue
        out.append(e)
    far = datetime.max.replace(tzinfo=UTC).isoformat()
    out.sort(key=lambda e: (e["sla_deadline"] or far, e["intent_confidence"] if e["intent_confidence"] is not None
                            else -1.0))
    return out


def ticket(url: str, ticket_id: str, taxonomy: Taxonomy) -> dict[str, Any]:
    """Everything the ticket page shows: masked text, the model's explanation, the rule, the draft, reviews."""
    with db.connect(url) as conn:
        row = conn.execute(_TICKET_SQL, (ticket_id,)).fetchone()
        if row is None:
            raise ConsoleError(f"no ticket {ticket_id!r}; open one from the queue", 404)
        payload = row["payload"] or {}
        draft = dict(payload.get("draft") or {})
        call = None
        if draft.get("llm_call_id"):
            call = conn.execute(f"SELECT status, error, model, latency_ms, finish_reason FROM {LLM} "
                                "WHERE call_id = %s", (draft["llm_call_id"],)).fetchone()
        reviews = conn.execute(f"SELECT reviewer, kind, intent, urgency, route, comment, reply_edited, created_at "
                               f"FROM {REVIEWS} WHERE ticket_id = %s ORDER BY created_at", (ticket_id,)).fetchall()
        replies = conn.execute(f"SELECT kind, body, status, created_at FROM {REPLIES} WHERE ticket_id = %s "
                               "ORDER BY created_at", (ticket_id,)).fetchall()
    heads = (row["prediction"] or {}).get("heads", {})
    deadline = sla_deadline(taxonomy, row["intent"], row["urgency"], row["decided_at"])
    return {
        "ticket_id": row["ticket_id"],
        "channel": row["channel"],
        "masked_text": row["masked_text"],
        "pii_counts": row["pii_counts"],
        "route": row["queue_route"] or row["route"],
        "decided_route": row["route"],
        "open": row["queue_status"] is not None and row["queue_status"] != "done" and not reviews,
        "explanation": {
            "model": f"{row['model_name']} v{row['model_version']}",
            "arm": row["arm"],
            "rule_id": row["rule_id"],
            "reason": row["reason"],
            "policy_version": row["policy_version"],
            "abstained": row["abstained"],
            "heads": {name: {"label": h.get("label"), "confidence": h.get("confidence"),
                             "abstained": h.get("abstained", False), "top": (h.get("top_k") or [])[:3]}
                      for name, h in heads.items()},
        },
        "draft": {
            "text": draft.get("text") or "",
            "source": draft.get("source"),
            "prompt": draft.get("prompt_id"),
            "fallback_reason": draft.get("fallback_reason"),
            "status": row["draft_status"],
            "reason": row["draft_reason"],
            "call": None if call is None else {k: call[k] for k in ("status", "error", "model", "finish_reason")},
        } if draft or row["draft_status"] else None,
        "decided_at": row["decided_at"].isoformat(),
        "sla_deadline": deadline.isoformat() if deadline else None,
        "claimed_by": row["claimed_by"],
        "claim_expires_at": row["claim_expires_at"].isoformat() if row["claim_expires_at"] else None,
        "reviews": [{**r, "created_at": r["created_at"].isoformat()} for r in reviews],
        "replies": [{**r, "created_at": r["created_at"].isoformat()} for r in replies],
    }


def claim(url: str, ticket_id: str, who: User, minutes: int) -> dict[str, Any]:
    """Take (or renew) the claim; 409 while another reviewer holds a live one."""
    with db.connect(url) as conn:
        queued = conn.execute(f"SELECT 1 FROM {WQ} WHERE ticket_id = %s AND status <> 'done'", (ticket_id,))
        if queued.fetchone() is None:
            raise ConsoleError(f"ticket {ticket_id!r} is not in the queue (reviewed already, or never queued)", 404)
        row = conn.execute(_CLAIM_SQL, {"t": ticket_id, "r": who.name, "m": minutes}).fetchone()
        if row is None:
            holder = conn.execute(f"SELECT reviewer, expires_at FROM {CLAIMS} WHERE ticket_id = %s",
                                  (ticket_id,)).fetchone()
            who_when = (f"{holder['reviewer']} until {holder['expires_at'].astimezone(UTC):%H:%M:%S} UTC"
                        if holder else "another reviewer")
            raise ConsoleError(f"ticket {ticket_id!r} is claimed by {who_when}; pick another ticket", 409)
    return {"ticket_id": ticket_id, "claimed_by": row["reviewer"], "expires_at": row["expires_at"].isoformat()}


def release(url: str, ticket_id: str, who: User) -> bool:
    """Drop the caller's claim (a lead may drop anyone's); True when there was one."""
    with db.connect(url) as conn:
        return bool(conn.execute(f"DELETE FROM {CLAIMS} WHERE ticket_id = %s AND (reviewer = %s OR %s)",
                                 (ticket_id, who.name, who.can("lead"))).rowcount)


@dataclass(frozen=True)
class ReviewRequest:
    kind: str
    intent: str | None = None
    urgency: str | None = None
    route: str | None = None
    reply: str | None = None
    comment: str = ""


@dataclass
class PreparedReview:
    """A checked review: the feedback event to publish, or the stored review when the key was seen."""

    key: str
    ticket_id: str
    feedback: Feedback | None = None
    replayed: dict[str, Any] | None = None
    draft: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    claimed_at: datetime | None = None


def event_id(key: str) -> str:
    """The feedback event id of a review key: the same key always publishes the same event."""
    return "console-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _stored(conn: Any, key: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT review_key, ticket_id, reviewer, kind, intent, urgency, route, reply_edited, "
                       f"feedback_event_id, reply_action_key, created_at FROM {REVIEWS} WHERE review_key = %s",
                       (key,)).fetchone()
    return None if row is None else {**row, "created_at": row["created_at"].isoformat(), "replayed": True}


def _check_labels(req: ReviewRequest, known: dict[str, list[str]]) -> None:
    for head, value in (("intent", req.intent), ("urgency", req.urgency)):
        labels = known.get(head)
        if value is not None and labels is not None and value not in labels:
            shown = ", ".join(labels[:12]) + (f" ({len(labels)} in all)" if len(labels) > 12 else "")
            raise ConsoleError(f"{head} {value!r} is not a label of the live models; they know {shown}")


def prepare_review(url: str, ticket_id: str, key: str, req: ReviewRequest, who: User,
                   known: dict[str, list[str]]) -> PreparedReview:
    """Check a review and build its feedback event; a seen key returns the stored review instead."""
    if not key or len(key) > 200:
        raise ConsoleError("send an Idempotency-Key header (1 to 200 characters) with each review")
    if req.kind not in FEEDBACK_KINDS:
        raise ConsoleError(f"kind {req.kind!r}: use one of {', '.join(FEEDBACK_KINDS)}")
    if req.kind == "correct" and req.intent is None and req.urgency is None:
        raise ConsoleError("a correction names the right intent or urgency (or both)")
    if req.kind == "reroute" and req.route not in ROUTES:
        raise ConsoleError(f"a reroute names the route: one of {', '.join(ROUTES)}")
    if req.reply is not None and len(req.reply) > MAX_REPLY_CHARS:
        raise ConsoleError(f"the reply has {len(req.reply)} characters; keep it under {MAX_REPLY_CHARS}")
    if req.reply is not None and req.kind in ("escalate", "reroute"):
        raise ConsoleError(f"a {req.kind} sends no reply; approve (confirm or correct) to send one")
    _check_labels(req, known)
    with db.connect(url) as conn:
        seen = _stored(conn, key)
        if seen is not None:
            if seen["ticket_id"] != ticket_id or seen["reviewer"] != who.name:
                raise ConsoleError("this Idempotency-Key was used for another review; send a new key", 409)
            return PreparedReview(key=key, ticket_id=ticket_id, replayed=seen)
        row = conn.execute(_TICKET_SQL, (ticket_id,)).fetchone()
        if row is None or row["queue_status"] is None:
            raise ConsoleError(f"ticket {ticket_id!r} is not in the queue", 404)
        if row["queue_status"] == "done" or conn.execute(f"SELECT 1 FROM {REVIEWS} WHERE ticket_id = %s",
                                                          (ticket_id,)).fetchone():
            raise ConsoleError(f"ticket {ticket_id!r} was reviewed already", 409)
        if row["claimed_by"] is not None and row["claimed_by"] != who.name:
            raise ConsoleError(f"ticket {ticket_id!r} is claimed by {row['claimed_by']}; it is theirs to review", 409)
    payload = row["payload"] or {}
    comment = mask(req.comment).text if req.comment else ""  # a comment may quote the customer
    fb = Feedback(event_id=event_id(key), ticket_id=ticket_id, kind=req.kind,  # type: ignore[arg-type]
                  intent=req.intent, urgency=req.urgency, route=req.route,  # type: ignore[arg-type]
                  reviewer=who.name, comment=comment, created_at=datetime.now(UTC))
    return PreparedReview(key=key, ticket_id=ticket_id, feedback=fb, draft=(payload.get("draft") or {}).get("text"),
                          payload=payload, claimed_at=row["claimed_at"] if row["claimed_by"] == who.name else None)


def record_review(url: str, prepared: PreparedReview, req: ReviewRequest, who: User, adapter: str) -> dict[str, Any]:
    """Write the review, its reply action and the closed queue entry in one transaction (after publishing)."""
    from streams.actions import reply_action

    fb = prepared.feedback
    assert fb is not None, "record_review takes a review that prepare_review did not find stored"
    with db.connect(url) as conn:
        seen = _stored(conn, prepared.key)
        if seen is not None:
            return seen
        action_key = None
        edited = None
        if req.reply is not None and req.reply.strip():
            edited = req.reply.strip() != (prepared.draft or "").strip()
            action = reply_action(prepared.ticket_id, prepared.payload, req.reply, adapter, reviewer=who.name,
                                  edited=edited)
            conn.execute(f"INSERT INTO {ACTIONS} (action_id, ticket_id, kind, adapter, idempotency_key, payload) "
                         "VALUES (%(action_id)s, %(ticket_id)s, %(kind)s, %(adapter)s, %(idempotency_key)s, "
                         "%(payload)s) ON CONFLICT (idempotency_key) DO NOTHING",
                         {**action, "payload": Jsonb(action["payload"])})
            action_key = action["idempotency_key"]
        handling = None
        if prepared.claimed_at is not None:
            handling = int((datetime.now(UTC) - prepared.claimed_at).total_seconds() * 1000)
        conn.execute(
            f"INSERT INTO {REVIEWS} (review_key, ticket_id, reviewer, kind, intent, urgency, route, reply, draft, "
            "reply_edited, comment, feedback_event_id, reply_action_key, claimed_at, handling_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (prepared.key, prepared.ticket_id, who.name, fb.kind, fb.intent, fb.urgency, fb.route,
             req.reply, prepared.draft, edited, fb.comment, fb.event_id, action_key, prepared.claimed_at, handling))
        conn.execute(f"UPDATE {WQ} SET status = 'done', claimed_by = %s WHERE ticket_id = %s",
                     (who.name, prepared.ticket_id))
        conn.execute(f"DELETE FROM {CLAIMS} WHERE ticket_id = %s", (prepared.ticket_id,))
        stored = _stored(conn, prepared.key)
    assert stored is not None
    return {**stored, "replayed": False}


def lead_stats(url: str, since: datetime) -> dict[str, Any]:
    """Per reviewer and per intent since `since`: handled, median handling time, override rate; queue age."""
    overridden = "(r.kind <> 'confirm')"
    with db.connect(url) as conn:
        per_reviewer = conn.execute(
            f"SELECT r.reviewer, count(*) AS handled, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY r.handling_ms) / 1000.0 AS median_handling_s, "
            f"avg({overridden}::int)::float AS override_rate, "
            "avg(CASE WHEN r.reply IS NOT NULL THEN (NOT r.reply_edited)::int END)::float AS drafts_unedited "
            f"FROM {REVIEWS} r WHERE r.created_at >= %s GROUP BY r.reviewer ORDER BY handled DESC", (since,)).fetchall()
        per_intent = conn.execute(
            f"SELECT coalesce(d.intent, '(none)') AS intent, count(*) AS handled, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY r.handling_ms) / 1000.0 AS median_handling_s, "
            f"avg({overridden}::int)::float AS override_rate FROM {REVIEWS} r JOIN {DEC} d USING (ticket_id) "
            "WHERE r.created_at >= %s GROUP BY 1 ORDER BY handled DESC", (since,)).fetchall()
        age = conn.execute(
            f"SELECT count(*) AS open, extract(epoch FROM now() - min(created_at)) AS oldest_s, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM now() - created_at)) AS median_age_s "
            f"FROM {WQ} WHERE status <> 'done'").fetchone()
    return {"since": since.isoformat(), "reviewers": per_reviewer, "intents": per_intent, "queue": age}
