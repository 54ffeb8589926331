"""The console's JSON API and sessions against the real app, PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from apps.console.users import disable_user, issue_token
from tests.console.conftest import PASSWORD, ConsoleServer, seed_queue
from triage import db
from triage.names import TOPIC_FEEDBACK

pytestmark = pytest.mark.integration


async def _events(bootstrap: str, ticket_ids: set[str], idle_s: float = 2.0) -> list[dict]:
    """Every feedback event on the topic for these tickets (read from the start until it is quiet)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(TOPIC_FEEDBACK, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                return out
            for msgs in batch.values():
                for m in msgs:
                    event = json.loads(m.value or b"{}")
                    if event.get("ticket_id") in ticket_ids:
                        out.append(event)
    finally:
        await consumer.stop()


def _deliver(url: str) -> int:
    """One pass of the outbox dispatcher with the embedded reply adapter (what the drafting worker runs)."""
    from streams.actions import Dispatcher, ReplyOutboxAdapter
    from streams.breaker import BreakerBoard

    async def once() -> int:
        d = Dispatcher(url, [ReplyOutboxAdapter()], BreakerBoard(failures=5, window_s=60, open_s=30))
        try:
            return await d.run_once()
        finally:
            await d.close()

    return asyncio.run(once())


def _count(url: str, sql: str, *args: object) -> int:
    with db.connect(url) as conn:
        return int(conn.execute(sql, args).fetchone()["count"])


def test_without_a_session_or_a_valid_token_the_api_says_401_and_pages_go_to_login(console: ConsoleServer) -> None:
    seeded = seed_queue(console.url, 3)
    tid = seeded.ticket_ids[0]
    for c in (console.client(), console.client("trg_not-a-token"), console.client("junk")):
        assert c.get("/api/queue").status_code == 401
        assert c.get(f"/api/tickets/{tid}").status_code == 401
        assert c.post(f"/api/tickets/{tid}/claim").status_code == 401
        r = c.post(f"/api/tickets/{tid}/review", json={"kind": "confirm"}, headers={"Idempotency-Key": "k"})
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]
        page = c.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    token = issue_token(console.url, "ana")
    disable_user(console.url, "ana")
    assert console.client(token).get("/api/queue").status_code == 401


def test_the_queue_is_sorted_by_sla_then_confidence_and_filters(console: ConsoleServer) -> None:
    seeded = seed_queue(console.url, 6)
    c = console.client(issue_token(console.url, "ana"))
    items = c.get("/api/queue").json()["items"]
    assert {i["ticket_id"] for i in items} == set(seeded.ticket_ids)
    deadlines = [i["sla_deadline"] for i in items]
    assert deadlines == sorted(deadlines) and all(deadlines)  # the bank's taxonomy has an SLA per urgency
    one = items[0]
    only = c.get("/api/queue", params={"intent": one["intent"]}).json()["items"]
    assert only and all(i["intent"] == one["intent"] for i in only)
    assert all(i["route"] == "escalate" for i in c.get("/api/queue", params={"route": "escalate"}).json()["items"])
    assert c.get("/api/queue", params={"claimed": "maybe"}).status_code == 422


def test_a_second_claim_is_409_and_only_the_holder_may_review(console: ConsoleServer) -> None:
    tid = seed_queue(console.url, 3).ticket_ids[0]
    ana, ben = console.client(issue_token(console.url, "ana")), console.client(issue_token(console.url, "ben"))
    assert ana.post(f"/api/tickets/{tid}/claim").status_code == 200
    assert ana.post(f"/api/tickets/{tid}/claim").status_code == 200  # renewing one's own claim
    taken = ben.post(f"/api/tickets/{tid}/claim")
    assert taken.status_code == 409 and "claimed by ana" in taken.json()["detail"]
    r = ben.post(f"/api/tickets/{tid}/review", json={"kind": "confirm"}, headers={"Idempotency-Key": "ben-1"})
    assert r.status_code == 409 and "it is theirs" in r.json()["detail"]
    assert ana.get("/api/queue", params={"claimed": "mine"}).json()["count"] == 1
    assert ana.post(f"/api/tickets/{tid}/release").json()["released"] is True
    assert ben.post(f"/api/tickets/{tid}/claim").status_code == 200


def test_a_review_is_one_feedback_event_and_one_delivered_reply_however_often_it_is_sent(
        console: ConsoleServer) -> None:
    seeded = seed_queue(console.url, 3)
    tid = seeded.ticket_ids[0]  # draft_for_review, with a draft
    ana = console.client(issue_token(console.url, "ana"))
    assert ana.post(f"/api/tickets/{tid}/claim").status_code == 200
    body = {"kind": "confirm", "reply": "Hello, your new card is on its way.", "comment": "fine"}
    first = ana.post(f"/api/tickets/{tid}/review", json=body, headers={"Idempotency-Key": "ana-approve-1"})
    assert first.status_code == 201, first.text
    again = ana.post(f"/api/tickets/{tid}/review", json=body, headers={"Idempotency-Key": "ana-approve-1"})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["feedback_event_id"] == first.json()["feedback_event_id"]
    other = ana.post(f"/api/tickets/{tid}/review", json=body, headers={"Idempotency-Key": "ana-approve-2"})
    assert other.status_code == 409 and "reviewed already" in other.json()["detail"]

    events = asyncio.run(_events(console.bootstrap, {tid}))
    assert len(events) == 1 and events[0]["kind"] == "confirm" and events[0]["reviewer"] == "ana"
    assert events[0]["event_id"] == first.json()["feedback_event_id"]
    assert _count(console.url, "SELECT count(*) FROM triage.actions WHERE ticket_id = %s AND kind = 'reply'", tid) == 1
    assert _deliver(console.url) == 1 and _deliver(console.url) == 0
    with db.connect(console.url) as conn:
        sent = conn.execute("SELECT body FROM triage.replies WHERE ticket_id = %s", (tid,)).fetchall()
        review = conn.execute("SELECT reply_edited, handling_ms FROM triage.reviews WHERE ticket_id = %s",
                              (tid,)).fetchone()
    assert [r["body"] for r in sent] == [body["reply"]]
    assert review["reply_edited"] is True and review["handling_ms"] >= 0
    assert tid not in {i["ticket_id"] for i in ana.get("/api/queue").json()["items"]}


def test_bad_reviews_are_refused_with_what_to_send(console: ConsoleServer) -> None:
    tid = seed_queue(console.url, 3).ticket_ids[1]
    ana = console.client(issue_token(console.url, "ana"))
    cases = [({"kind": "confirm"}, {}, "Idempotency-Key"),
             ({"kind": "approve"}, {"Idempotency-Key": "x1"}, "use one of confirm, correct, reroute, escalate"),
             ({"kind": "correct"}, {"Idempotency-Key": "x2"}, "names the right intent or urgency"),
             ({"kind": "reroute", "route": "moon"}, {"Idempotency-Key": "x3"}, "names the route"),
             ({"kind": "escalate", "reply": "hi"}, {"Idempotency-Key": "x4"}, "sends no reply")]
    for body, headers, expected in cases:
        r = ana.post(f"/api/tickets/{tid}/review", json=body, headers=headers)
        assert r.status_code == 422 and expected in r.json()["detail"], (body, r.text)
    r = ana.post(f"/api/tickets/{tid}/review", content=b"not json", headers={"Idempotency-Key": "x5"})
    assert r.status_code == 422 and "JSON object" in r.json()["detail"]
    assert ana.post("/api/tickets/T-nope/claim").status_code == 404


def test_session_posts_need_the_csrf_token_and_logins_are_rate_limited(console: ConsoleServer) -> None:
    tid = seed_queue(console.url, 3).ticket_ids[0]
    ana = console.login("ana")
    assert ana.get("/api/me").json() == {"name": "ana", "role": "reviewer"}
    cookie = ana.cookies.get("triage_session")
    assert cookie
    set_cookie = ana.get("/login").headers.get("set-cookie", "")  # the session cookie's flags, on a fresh login
    fresh = console.client()
    fresh.get("/login")
    r = fresh.post("/login", data={"name": "ben", "password": PASSWORD, "next": "/",
                                   "csrftoken": fresh.cookies["csrftoken"]})
    flags = r.headers["set-cookie"].lower()
    assert "triage_session=" in flags and "httponly" in flags and "samesite=lax" in flags, set_cookie
    no_header = console.client()
    no_header.cookies.update(ana.cookies)
    assert no_header.post(f"/api/tickets/{tid}/claim").status_code == 403  # cookie without the token
    assert ana.post(f"/api/tickets/{tid}/claim").status_code == 200
    forged = console.client()
    forged.get("/login")
    assert forged.post("/login", data={"name": "ana", "password": PASSWORD}).status_code == 403

    attacker = console.client()
    attacker.get("/login")
    codes = [attacker.post("/login", data={"name": "lea", "password": "wrong-password", "next": "/",
                                           "csrftoken": attacker.cookies["csrftoken"]}).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_a_lead_sees_everyones_numbers_and_a_reviewer_does_not(console: ConsoleServer) -> None:
    seeded = seed_queue(console.url, 3)
    ana = console.client(issue_token(console.url, "ana"))
    tid = seeded.ticket_ids[1]
    ana.post(f"/api/tickets/{tid}/claim")
    r = ana.post(f"/api/tickets/{tid}/review", json={"kind": "correct", "intent": "card_arrival"},
                 headers={"Idempotency-Key": "k"})
    assert r.status_code == 201, r.text
    assert ana.get("/api/lead").status_code == 403
    denied = ana.get("/api/users")  # the role check names who may: a reviewer is neither lead nor admin
    assert denied.status_code == 403 and denied.json()["detail"] == "managing users is for admins"
    stats = console.client(issue_token(console.url, "lea")).get("/api/lead").json()
    (row,) = stats["reviewers"]
    assert row["reviewer"] == "ana" and row["handled"] == 1 and row["override_rate"] == 1.0
    assert stats["queue"]["open"] == 2


def test_no_page_or_answer_shows_a_planted_personal_value(console: ConsoleServer) -> None:
    seeded = seed_queue(console.url, 6)
    assert len(seeded.planted) >= 6
    ana = console.login("ana")
    answers = [ana.get("/").text, ana.get("/bulk").text, ana.get("/api/queue").text]
    for tid in seeded.ticket_ids:
        answers += [ana.get(f"/tickets/{tid}").text, ana.get(f"/api/tickets/{tid}").text]
    joined = "\n".join(answers)
    assert re.search(r"(<|&lt;|\\u003c)[A-Z]+_1(>|&gt;|\\u003e)", joined), "the masked placeholders are shown"
    leaked = [v for v in seeded.planted if v in joined]
    assert not leaked, leaked
    # A ticket id in the address is shown escaped, never as markup.
    page = ana.get("/tickets/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert page.status_code == 404 and "<img" not in page.text and "&lt;img src=x" in page.text, page.text


def test_the_simulators_reviewer_works_the_queue_through_the_api(console: ConsoleServer) -> None:
    """What `triage up` wires: a 'simulator' user's token, claim then review, the draft sent on a confirm."""
    from apps.console.users import service_token
    from apps.simulator import ConsoleReviewer

    seeded = seed_queue(console.url, 3)
    drafted, queued = seeded.ticket_ids[0], seeded.ticket_ids[1]
    token = service_token(console.url, "simulator")
    assert service_token(console.url, "simulator") != token  # a new one revokes the old
    assert console.client(token).get("/api/me").status_code == 401

    async def work() -> int:
        reviewer = ConsoleReviewer(console.base, service_token(console.url, "simulator"), patience_s=3)
        try:
            await reviewer.review_later(drafted, {"event_id": "e1", "kind": "confirm", "intent": None}, 0)
            await reviewer.review_later(queued, {"event_id": "e2", "kind": "correct", "intent": "card_arrival",
                                                 "urgency": "low"}, 0)
            await reviewer.review_later("T-not-queued", {"event_id": "e3", "kind": "confirm"}, 0)  # gives up
            return reviewer.done
        finally:
            await reviewer.close()

    assert asyncio.run(work()) == 2
    with db.connect(console.url) as conn:
        rows = {r["ticket_id"]: r for r in conn.execute(
            "SELECT ticket_id, reviewer, kind, intent, reply, reply_edited FROM triage.reviews").fetchall()}
    assert set(rows) == {drafted, queued}
    assert rows[drafted]["reviewer"] == "simulator" and rows[drafted]["reply_edited"] is False
    assert rows[drafted]["reply"].startswith("Hello, thanks for writing.")
    assert (rows[queued]["kind"], rows[queued]["intent"], rows[queued]["reply"]) == ("correct", "card_arrival", None)


def test_after_sign_in_only_paths_on_this_site_are_followed() -> None:
    from apps.console.app import local_path

    assert local_path("/tickets/T-1") == "/tickets/T-1"
    for outside in ("//evil.example", "/\\evil.example", "https://evil.example", "evil", ""):
        assert local_path(outside) == "/", outside
