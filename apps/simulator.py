"""Synthetic support traffic: labelled tickets with PII, channel styles, drift, and reviewer feedback.

Generation is pure and seeded (`TicketGenerator`); `run()` streams it to Kafka and answers the
worker's decisions on `triage.decisions` with delayed reviewer feedback (confirm or correct).
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apps import sim_text as T
from triage.names import TOPIC_DECISIONS, TOPIC_FEEDBACK, TOPIC_RAW
from triage.taxonomy import bank

log = logging.getLogger(__name__)


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to `prefix`."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def iban_complete(country: str, bban: str) -> str:
    """A valid IBAN (ISO 13616 mod-97 check digits) for `country` and `bban`."""
    rearranged = bban + country + "00"
    digits = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


_PII_LEADS = {"EMAIL": "You can reach me at", "PHONE": "Call me on", "CARD": "My card number is",
              "IBAN": "My IBAN is"}


@dataclass
class SimTicket:
    """A generated ticket plus its ground truth and the PII planted in it."""

    message: dict[str, Any]
    intent: str
    urgency: str | None
    pii: dict[str, list[str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"{self.message['subject']}\n{self.message['body']}".strip()


@dataclass
class TicketGenerator:
    seed: int = 0
    pii_rate: float = 0.35
    ood_rate: float = 0.0
    drift_after: int | None = None
    typo_rate: float = 0.008

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.count = 0

    # PII values in varied formats
    def _email(self, name: str) -> str:
        user = name.lower().replace(" ", self.rng.choice([".", "_", ""])).replace("'", "")
        return f"{user}{self.rng.randint(1, 99)}@{self.rng.choice(['gmail.com', 'example.org', 'mail.co.uk'])}"

    def _phone(self) -> str:
        r = self.rng
        return r.choice(
            [
                f"+44 7{r.randint(100, 999)} {r.randint(100000, 999999)}",
                f"+49 151 {r.randint(1000000, 9999999)}",
                f"(555) {r.randint(200, 999)}-{r.randint(1000, 9999)}",
                f"07{r.randint(100, 999)} {r.randint(100, 999)} {r.randint(100, 999)}",
            ]
        )

    def _card(self) -> str:
        r = self.rng
        prefix = r.choice(["4", "51", "52", "55"])
        number = luhn_complete(prefix + "".join(r.choices(string.digits, k=15 - len(prefix))))
        sep = r.choice([" ", "-", ""])
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))

    def _iban(self) -> str:
        r = self.rng
        country, length = r.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14)])
        if country == "GB":
            bban = "".join(r.choices(string.ascii_uppercase, k=4)) + "".join(r.choices(string.digits, k=14))
        elif country == "NL":
            bban = "".join(r.choices(string.ascii_uppercase, k=4)) + "".join(r.choices(string.digits, k=10))
        else:
            bban = "".join(r.choices(string.digits, k=length))
        iban = iban_complete(country, bban)
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if r.random() < 0.5 else iban

    def _typos(self, text: str) -> str:
        chars = list(text)
        for i in range(len(chars) - 1):
            if chars[i].isalpha() and chars[i + 1].isalpha() and self.rng.random() < self.typo_rate:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return "".join(chars)

    def _pick_intent(self, drifting: bool) -> str:
        if self.ood_rate and self.rng.random() < self.ood_rate:
            return bank().out_of_scope
        intents = bank().intent_names
        weights = [T.DRIFT_INTENT_BOOST.get(i, 1.0) if drifting else 1.0 for i in intents]
        return self.rng.choices(intents, weights=weights)[0]

    def _urgency(self, intent: str) -> str:
        urgencies = bank().urgencies
        base = urgencies.index(T.BASE_URGENCY[intent])
        shift = self.rng.choices([-1, 0, 1], weights=[0.2, 0.6, 0.2])[0]
        return urgencies[min(max(base + shift, 0), len(urgencies) - 1)]

    def generate(self) -> SimTicket:
        r = self.rng
        self.count += 1
        drifting = self.drift_after is not None and self.count > self.drift_after
        intent = self._pick_intent(drifting)
        urgency = self._urgency(intent)
        name = r.choice(T.NAMES)
        channel = r.choices(["email", "chat", "internal"], weights=[0.55, 0.4, 0.05])[0]
        request = r.choice(T.REQUESTS[intent]).format(
            amount=f"{r.randint(5, 2500)}.{r.randint(0, 99):02d}",
            merchant=r.choice(T.MERCHANTS),
            days=r.randint(2, 21),
            currency=r.choice(T.CURRENCIES),
        )
        parts = [request]
        cue = r.choice(T.URGENCY_CUES[urgency])
        if cue:
            parts.append(cue)
        if drifting and r.random() < 0.7:
            parts.insert(r.randint(0, len(parts)), r.choice(T.DRIFT_PHRASES))
        body = self._typos(" ".join(parts))
        if channel != "email" and r.random() < 0.3:
            body = body.lower()  # chat style; applied before PII so planted values stay exact
        pii: dict[str, list[str]] = {}
        if r.random() < self.pii_rate:
            kind = r.choice(["EMAIL", "PHONE", "CARD", "IBAN"])
            value = self.pii_value(kind, name)
            pii.setdefault(kind, []).append(value)
            body += f" {_PII_LEADS[kind]} {value}."
        message = self._message(body, T.SUBJECTS[intent], channel, name, drifting)
        return SimTicket(message=message, intent=intent, urgency=urgency, pii=pii)

    def pii_value(self, kind: str, name: str) -> str:
        """A fresh value of a planted PII kind (EMAIL, PHONE, CARD, IBAN; PERSON is `name`)."""
        if kind == "EMAIL":
            return self._email(name)
        makers: dict[str, Callable[[], str]] = {"PHONE": self._phone, "CARD": self._card, "IBAN": self._iban,
                                                "PERSON": lambda: name}
        return makers[kind]()

    def _message(self, body: str, topic: str, channel: str, name: str, drifting: bool) -> dict[str, Any]:
        """The ticket as a channel sends it: emails get a greeting, a signature, a quoted reply and a subject."""
        r = self.rng
        if channel == "email":
            greeting = r.choice(T.GREETINGS)
            body = (f"{greeting}\n\n" if greeting else "") + body + f"\n\n{r.choice(T.SIGNOFFS)}\n{name}"
            if r.random() < 0.3:
                body += f"\n\nOn Mon, {name.split()[0]} wrote:\n> Thank you for contacting us.\n> Ticket received."
            subject = r.choice([topic, "Help needed", "Question", f"Re: {topic}"])
        else:
            subject = ""
        return {
            "ticket_id": f"T-{uuid.UUID(int=r.getrandbits(128)).hex[:16]}",
            "channel": channel,
            "customer_ref": f"C-{r.randint(10000, 99999)}",
            "subject": subject,
            "body": body,
            "received_at": datetime.now(UTC).isoformat(),
            "metadata": {"source": "simulator", "drift": drifting},
        }

    def stream(self, count: int | None) -> Iterator[SimTicket]:
        n = 0
        while count is None or n < count:
            n += 1
            yield self.generate()


MALFORMED: tuple[bytes, ...] = (
    b"not json at all",
    b'{"ticket_id": "X-1", "channel": "email"}',
    b'{"ticket_id": "X-2", "channel": "fax", "body": "hi", "received_at": "2026-01-01T00:00:00Z"}',
    b"\xff\xfe\x00binary",
    b"[]",
)


def feedback_for(truth_intent: str, truth_urgency: str | None, decision: dict[str, Any], rng: random.Random,
                 reviewer: str = "sim-reviewer") -> dict[str, Any]:
    """A reviewer's verdict on a decision: confirm when the model was right, else correct it."""
    prediction = decision.get("prediction", {}).get("heads", {})
    predicted_intent = prediction.get("intent", {}).get("label")
    predicted_urgency = prediction.get("urgency", {}).get("label")
    right = predicted_intent == truth_intent and predicted_urgency in (None, truth_urgency)
    return {
        "event_id": f"F-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
        "ticket_id": decision["ticket_id"],
        "kind": "confirm" if right else "correct",
        "intent": truth_intent,
        "urgency": truth_urgency,
        "reviewer": reviewer,
        "created_at": datetime.now(UTC).isoformat(),
    }


def write_csv(path: Path, count: int, seed: int, ood_rate: float = 0.05, drift_after: int | None = None,
              generator: TicketGenerator | None = None) -> int:
    """Write `count` labelled tickets (text, intent, urgency) for training; return rows written.

    `generator`: the traffic to write (default the bank's, seeded by `seed`, `ood_rate`, `drift_after`).
    """
    gen = generator or TicketGenerator(seed=seed, ood_rate=ood_rate, drift_after=drift_after)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ticket_id", "text", "intent", "urgency", "channel"])
        for t in gen.stream(count):
            writer.writerow([t.message["ticket_id"], t.text, t.intent, t.urgency or "", t.message["channel"]])
    return count


_MAX_UNANSWERED = 100_000


@dataclass
class SimStats:
    tickets: int = 0
    malformed: int = 0
    feedback: int = 0
    console_reviews: int = 0


# Routes whose tickets wait for a person in the review console (the others are feedback on automation).
PEOPLES_ROUTES = frozenset({"draft_for_review", "human_queue", "escalate"})


class ConsoleReviewer:
    """The simulated reviewer as a person works: claim the queued ticket, then review it, over the API.

    The queue entry appears once the outbox has delivered the ticket to the work queue (after drafting for
    draft_for_review), so a 404 is retried with backoff for up to `patience_s`; a 409 (a person holds it,
    or reviewed it) leaves the ticket to them.
    """

    def __init__(self, base_url: str, token: str, patience_s: float = 120.0) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                        timeout=15.0)
        self.patience_s = patience_s
        self.done = 0

    async def review_later(self, ticket_id: str, event: dict[str, Any], delay: float) -> None:
        from triage.backoff import retry_delay

        await asyncio.sleep(delay)
        deadline = asyncio.get_running_loop().time() + self.patience_s
        retry = 0
        while True:
            try:
                claim = await self.client.post(f"/api/tickets/{ticket_id}/claim")
                if claim.status_code == 200:
                    ticket = (await self.client.get(f"/api/tickets/{ticket_id}")).json()
                    draft = (ticket.get("draft") or {}).get("text") or None
                    body = {k: event.get(k) for k in ("kind", "intent", "urgency")}
                    body["reply"] = draft if event["kind"] == "confirm" else None
                    r = await self.client.post(f"/api/tickets/{ticket_id}/review", json=body,
                                               headers={"Idempotency-Key": f"sim:{event['event_id']}"})
                    if r.status_code in (200, 201):
                        self.done += 1
                    return
                if claim.status_code != 404:
                    return  # claimed or reviewed by someone else, or refused: theirs
            except Exception as exc:  # the console restarting or busy: try again below
                log.debug("console review of %s: %s", ticket_id, exc)
            retry += 1
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(retry_delay(retry, 1.0, 15.0))

    async def close(self) -> None:
        await self.client.aclose()


async def run(
    bootstrap: str,
    *,
    rate: float,
    count: int | None,
    seed: int,
    drift_after: int | None,
    feedback_rate: float,
    feedback_delay: float,
    malformed_rate: float,
    ood_rate: float = 0.02,
    stats: SimStats | None = None,
    generator: TicketGenerator | None = None,
    console: ConsoleReviewer | None = None,
) -> SimStats:
    """Produce tickets at `rate`/s (forever when count is None) and feedback on the decisions seen.

    `generator`: the traffic (default the bank's, from `seed`, `drift_after`, `ood_rate`). `console`: the
    reviewer works tickets routed to people through the review console's API (as a person does), and
    sends feedback straight to `tickets.feedback` only for the others (auditing automated decisions).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    stats = stats or SimStats()
    gen = generator or TicketGenerator(seed=seed, drift_after=drift_after, ood_rate=ood_rate)
    rng = random.Random(seed + 1)
    truth: dict[str, tuple[str, str | None]] = {}
    pending: set[asyncio.Future[Any]] = set()  # keep references to scheduled sends
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    consumer = None
    feedback_task = None
    if feedback_rate > 0:
        consumer = AIOKafkaConsumer(
            TOPIC_DECISIONS, bootstrap_servers=bootstrap, group_id=f"simulator-{seed}", auto_offset_reset="latest"
        )
        await consumer.start()

        def _send_later(event: dict[str, Any]) -> None:
            fut = asyncio.ensure_future(
                producer.send(TOPIC_FEEDBACK, json.dumps(event).encode(), key=event["ticket_id"].encode())
            )
            pending.add(fut)
            fut.add_done_callback(pending.discard)

        async def answer() -> None:
            assert consumer is not None
            async for msg in consumer:
                try:
                    decision = json.loads(msg.value or b"{}")
                    known = truth.pop(decision["ticket_id"], None)
                except (ValueError, KeyError, TypeError):
                    continue
                if known is None or rng.random() >= feedback_rate:
                    continue
                event = feedback_for(known[0], known[1], decision, rng)
                if console is not None and decision.get("route") in PEOPLES_ROUTES:
                    task = asyncio.ensure_future(console.review_later(decision["ticket_id"], event, feedback_delay))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                else:
                    asyncio.get_running_loop().call_later(feedback_delay, _send_later, event)
                stats.feedback += 1

        feedback_task = asyncio.create_task(answer())
    try:
        interval = 1.0 / rate
        for ticket in gen.stream(count):
            if malformed_rate and rng.random() < malformed_rate:
                await producer.send(TOPIC_RAW, rng.choice(MALFORMED))
                stats.malformed += 1
            truth[ticket.message["ticket_id"]] = (ticket.intent, ticket.urgency)
            if len(truth) > _MAX_UNANSWERED:  # tickets never decided (no worker): forget the oldest
                truth.pop(next(iter(truth)))
            await producer.send(
                TOPIC_RAW, json.dumps(ticket.message).encode(), key=ticket.message["ticket_id"].encode()
            )
            stats.tickets += 1
            await asyncio.sleep(interval)
        await producer.flush()
        if feedback_task is not None:
            await asyncio.sleep(feedback_delay + 1)
    finally:
        if feedback_task is not None:
            feedback_task.cancel()
        if consumer is not None:
            await consumer.stop()
        await producer.stop()
        if console is not None:
            await console.close()
            stats.console_reviews = console.done
    return stats
