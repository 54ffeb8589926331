"""One micro-batch from raw bytes to committed, published decisions; what the faust agents call.

Order per batch (at-least-once in, exactly-once in effect):
decode and claim the ticket ids -> prepare -> classify -> decide -> one Postgres transaction
(tickets, decisions, dead letters; all `ON CONFLICT DO NOTHING`) -> publish decisions and dead
letters -> return, after which faust acks the offsets. A crash anywhere before the ack replays
the batch: stored tickets are recognised as duplicates and their stored decision is re-published,
so the topic may carry a decision twice (same content) but the database never does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from streams.audit import AuditSink
from streams.decide import Classified, build_decision, classify
from streams.ingest import WITHHELD, Reject, Seal, Source, dead_letter, decode_feedback, decode_ticket, reason_kind
from streams.metrics import Metrics
from streams.models import ModelManager
from streams.prepare import Prepared, prepare_many
from triage import dlq_crypto
from triage.names import TOPIC_DECISIONS, TOPIC_DLQ
from triage.pii import MaskResult, safe_mask_many
from triage.policy import PolicyWatcher
from triage.schemas import DeadLetter, Decision, Feedback, Ticket
from triage.taxonomy import KnownLabels

log = logging.getLogger(__name__)


Rejection = tuple[str, bytes | None, Source]  # a dead letter to make: reason, raw bytes, origin
_NOTED = DeadLetter(reason="noted", source_topic="", partition=0, offset=0, original="", encoding="utf-8")


def _noting(into: list[Rejection]) -> Reject:
    """A `reject` that only notes the rejection: its dead letter is made later, off the event loop."""
    def note(reason: str, raw: bytes | None, src: Source) -> DeadLetter:
        into.append((reason, raw, src))
        return _NOTED
    return note


@dataclass(frozen=True)
class RawMessage:
    value: bytes | None
    src: Source


class Publisher(Protocol):
    async def publish(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Send (key, value) pairs to `topic` and wait until the broker has them."""


@dataclass
class BatchReport:
    decided: list[Decision] = field(default_factory=list)
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class BatchWork:
    """A batch from `admit` (decoded, ids claimed) through `decide` (decided) to `persist` (stored, published)."""

    size: int
    started: float
    report: BatchReport = field(default_factory=BatchReport)
    tickets: list[Ticket] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    items: list[Prepared] = field(default_factory=list)
    republish: list[Decision] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Pipeline:
    def __init__(self, *, sink: AuditSink, publisher: Publisher, models: ModelManager, policy: PolicyWatcher,
                 metrics: Metrics, max_body_chars: int, model_name: str,
                 executor: ThreadPoolExecutor | None = None, pii_names: bool = True,
                 seal: Seal = dlq_crypto.encrypt, shadow_percent: float = 100.0) -> None:
        self.sink = sink
        self.publisher = publisher
        self.models = models
        self.policy = policy
        self.metrics = metrics
        self.max_body_chars = max_body_chars
        self.model_name = model_name
        self.shadow_percent = shadow_percent  # the sticky share of tickets a shadow model also classifies
        self.masker = partial(safe_mask_many, names=pii_names)
        # Dead letters: text masked like tickets' (in the classify thread: masking runs the name model), bytes
        # encrypted with the DLQ key.
        self.reject = partial(dead_letter, masker=self._mask_one, seal=seal)
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")
        # Ticket ids claimed by batches in flight (decoded, not yet committed): a later batch holding
        # the same id counts it as a duplicate instead of deciding it a second time.
        self.inflight: set[str] = set()

    def warm_up(self) -> None:
        """Load the PII gate's name model now (seconds), not in the first batch that needs it."""
        self._mask_one("Hello, my name is Anna Schmidt.")

    def _mask_one(self, text: str) -> MaskResult | None:
        return self.masker([text])[0]

    async def _dead_letters(self, rejected: Sequence[Rejection]) -> list[DeadLetter]:
        if not rejected:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: [self.reject(*r) for r in rejected])

    def _stage(self, name: str, ms: float) -> None:
        self.metrics.stage_seconds.labels(name).observe(ms / 1000.0)

    async def _publish_dead(self, dead: Sequence[DeadLetter]) -> None:
        if dead:
            await self.publisher.publish(TOPIC_DLQ, [(d.key.encode() if d.key else None,
                                                      d.model_dump_json().encode()) for d in dead])
            for d in dead:
                self.metrics.dead_letters.labels(d.source_topic, reason_kind(d.reason)).inc()

    async def process_tickets(self, batch: Sequence[RawMessage]) -> BatchReport:
        """Decide every valid, new ticket of the batch; dead-letter the rest. Retries until stored."""
        work = self.admit(batch)
        try:
            return await self.persist(await self.decide(work))
        finally:
            self.release(work)

    def admit(self, batch: Sequence[RawMessage]) -> BatchWork:
        """Decode the batch and claim its ticket ids; synchronous, so batches claim in arrival order.

        An id seen earlier in the batch, or claimed by a batch still in flight, is a duplicate.
        """
        work = BatchWork(size=len(batch), started=time.perf_counter())
        note = _noting(work.rejected)  # their dead letters are made in `decide`
        for msg in batch:
            result = decode_ticket(msg.value, msg.src, max_body_chars=self.max_body_chars, reject=note)
            if isinstance(result, DeadLetter):
                continue
            if result.ticket_id in work.claimed or result.ticket_id in self.inflight:
                work.report.duplicates += 1
            else:
                work.claimed.add(result.ticket_id)
                work.tickets.append(result)
        self.inflight |= work.claimed
        work.stages["decode"] = _ms(work.started)
        return work

    def release(self, work: BatchWork) -> None:
        """Give up the batch's claims once it is stored (or given up on)."""
        self.inflight -= work.claimed

    async def decide(self, work: BatchWork) -> BatchWork:
        """Everything before the first write: dead letters and prepare (masking), classify (CPU, in a thread), decide.

        Several batches may be here at once (see `streams.app.BatchRunner`). Tickets decided before a
        crash (a replay) are decided again here; `persist` finds them already stored and re-publishes the
        stored decision instead, so the database never changes and no query is spent on the common case.
        """
        report = work.report
        t2 = time.perf_counter()
        report.dead = await self._dead_letters(work.rejected)
        loop = asyncio.get_running_loop()  # masking runs the name model: CPU, so in the thread too
        work.items = await loop.run_in_executor(self.executor, prepare_many, work.tickets, self.masker) \
            if work.tickets else []
        work.stages["prepare"] = _ms(t2)

        t3 = time.perf_counter()
        await self.models.ensure_known()
        models = self.models.current
        results: list[Classified] = await loop.run_in_executor(
            self.executor, classify, models, work.items, self.shadow_percent) \
            if work.items else []
        work.stages["classify"] = _ms(t3)

        t4 = time.perf_counter()
        policy = self.policy.current
        n = max(1, work.size)
        timings = {"decode": work.stages["decode"] / n, "prepare": work.stages["prepare"] / n,
                   "classify": work.stages["classify"]}
        report.decided = [build_decision(item, res, models, policy, self.model_name, timings)
                          for item, res in zip(work.items, results, strict=True)]
        work.stages["decide"] = _ms(t4)
        return work

    async def persist(self, work: BatchWork) -> BatchReport:
        """Store the batch in one transaction, then publish its decisions and dead letters (in batch order)."""
        report = work.report
        t5 = time.perf_counter()
        new = await self.sink.write_batch([p.row() for p in work.items], report.decided, report.dead)
        if len(new) < len(report.decided):  # a replay: publish what was stored, not what was decided now
            stored = await self.sink.existing([d.ticket_id for d in report.decided if d.ticket_id not in new])
            report.duplicates += len(report.decided) - len(new)
            work.republish = list(stored.values())
            report.decided = [d for d in report.decided if d.ticket_id in new]
        work.stages["audit"] = _ms(t5)

        t6 = time.perf_counter()
        out = [*report.decided, *work.republish]
        if out:
            await self.publisher.publish(TOPIC_DECISIONS, [(d.ticket_id.encode(), d.model_dump_json().encode())
                                                           for d in out])
        await self._publish_dead(report.dead)
        work.stages["publish"] = _ms(t6)
        work.stages["batch"] = _ms(work.started)

        now = time.time()
        m = self.metrics
        for name, ms in work.stages.items():
            self._stage(name, ms)
        m.batch_size.observe(work.size)
        m.messages.labels("tickets.raw", "decided").inc(len(report.decided))
        m.messages.labels("tickets.raw", "duplicate").inc(report.duplicates)
        m.messages.labels("tickets.raw", "dead_letter").inc(len(report.dead))
        m.duplicates.inc(report.duplicates)
        for d in report.decided:
            m.decisions.labels(d.route, d.arm).inc()
            m.e2e_seconds.observe(max(0.0, now - d.received_at.timestamp()))
        return report

    async def process_feedback(self, batch: Sequence[RawMessage]) -> tuple[list[Feedback], list[DeadLetter]]:
        good: list[Feedback] = []
        rejected: list[Rejection] = []
        note = _noting(rejected)
        known = self.models.current.known_labels() or KnownLabels.of(
            [t for _, t in self.policy.taxonomies], "the workspace taxonomy")
        for msg in batch:
            result = decode_feedback(msg.value, msg.src, known, note)
            if isinstance(result, Feedback):
                good.append(result)
        good = await self._mask_comments(good)
        dead = await self._dead_letters(rejected)
        await self.sink.write_feedback(good, dead)
        await self._publish_dead(dead)
        for fb in good:
            self.metrics.feedback.labels(fb.kind).inc()
        self.metrics.messages.labels("tickets.feedback", "stored").inc(len(good))
        self.metrics.messages.labels("tickets.feedback", "dead_letter").inc(len(dead))
        return good, dead

    async def _mask_comments(self, feedback: list[Feedback]) -> list[Feedback]:
        """Reviewers' comments masked like ticket text (they quote the customer); withheld if masking fails."""
        comments = [fb.comment for fb in feedback if fb.comment]
        if not comments:
            return feedback
        masked = iter(await asyncio.get_running_loop().run_in_executor(self.executor, self.masker, comments))
        out = []
        for fb in feedback:
            if fb.comment:
                result = next(masked)
                fb = fb.model_copy(update={"comment": result.text if result is not None else WITHHELD})
            out.append(fb)
        return out

    async def dead_letter_all(self, batch: Sequence[RawMessage], reason: str) -> None:
        """Last resort when a batch fails for a reason other than an outage: keep every message as a dead letter.

        The reason carries an exception's message, which may quote the input: all after its kind is masked.
        """
        kind, _, detail = reason.partition(": ")
        loop = asyncio.get_running_loop()
        masked = await loop.run_in_executor(self.executor, self._mask_one, detail) if detail else MaskResult(text="")
        reason = f"{kind}: {masked.text if masked is not None else WITHHELD}"
        dead = await self._dead_letters([(reason, m.value, m.src) for m in batch])
        await self.sink.write_batch([], [], dead)
        await self._publish_dead(dead)
