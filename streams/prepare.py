"""Turn a valid ticket into what the classifier reads and what is stored: normalised, PII masked.

Nothing downstream of this stage sees raw text: the classifier, the audit row, the published
decision and the `tickets` table all get the masked copy. When masking fails the text is withheld
entirely and the ticket is routed to a person (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streams.audit import TicketRow
from streams.normalise import normalise
from triage.pii import MaskResult, safe_mask, safe_mask_many
from triage.schemas import Ticket

WITHHELD = "[withheld: PII masking failed]"
Masker = Callable[[str], MaskResult | None]
BatchMasker = Callable[[Sequence[str]], list[MaskResult | None]]


@dataclass(frozen=True)
class Prepared:
    ticket: Ticket
    subject: str
    body: str
    pii_counts: dict[str, int] = field(default_factory=dict)
    mask_failed: bool = False

    @property
    def text(self) -> str:
        """The classifier's input: masked subject and body."""
        return f"{self.subject}\n{self.body}".strip()

    def row(self) -> TicketRow:
        t = self.ticket
        return TicketRow(ticket_id=t.ticket_id, channel=t.channel, customer_ref=t.customer_ref,
                         subject_masked=self.subject, body_masked=self.body, pii_counts=self.pii_counts,
                         metadata=dict(t.metadata), received_at=t.received_at)


def prepare(ticket: Ticket, masker: Masker = safe_mask) -> Prepared:
    """Normalise subject and body, then mask PII in both; withhold both if masking failed."""
    subject = normalise(ticket.subject) if ticket.subject else ""
    body = normalise(ticket.body)
    masked_subject = masker(subject) if subject else MaskResult(text="")
    masked_body = masker(body)
    if masked_subject is None or masked_body is None:
        return Prepared(ticket=ticket, subject="", body=WITHHELD, mask_failed=True)
    counts = dict(masked_body.counts)
    for kind, n in masked_subject.counts.items():
        counts[kind] = counts.get(kind, 0) + n
    return Prepared(ticket=ticket, subject=masked_subject.text, body=masked_body.text, pii_counts=counts)


def prepare_many(tickets: Sequence[Ticket], masker: BatchMasker = safe_mask_many) -> list[Prepared]:
    """`prepare` for a micro-batch: one masking pass (one pass of the name model) over every subject and body."""
    texts = [normalise(x) for t in tickets for x in ((t.subject,) if t.subject else ()) + (t.body,)]
    done = dict(zip(texts, masker(texts), strict=True)) if texts else {}
    return [prepare(t, masker=done.__getitem__) for t in tickets]
