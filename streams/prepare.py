"""Turn a valid ticket into what the classifier reads and what is stored: normalised, PII masked.

Nothing downstream of this stage sees raw text: the classifier, the audit row, the published
decision and the `tickets` table (metadata values too) all get the masked copy. When masking fails the text is withheld
entirely and the ticket is routed to a person (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streams.audit import TicketRow
from streams.ingest import WITHHELD, Masker
from streams.normalise import normalise
from triage.pii import MaskResult, safe_mask, safe_mask_many
from triage.schemas import MetaValue, Ticket

BatchMasker = Callable[[Sequence[str]], list[MaskResult | None]]


@dataclass(frozen=True)
class Prepared:
    ticket: Ticket
    subject: str
    body: str
    pii_counts: dict[str, int] = field(default_factory=dict)
    mask_failed: bool = False
    metadata: dict[str, MetaValue] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The classifier's input: masked subject and body."""
        return f"{self.subject}\n{self.body}".strip()

    def row(self) -> TicketRow:
        t = self.ticket
        return TicketRow(ticket_id=t.ticket_id, channel=t.channel, customer_ref=t.customer_ref,
                         subject_masked=self.subject, body_masked=self.body, pii_counts=self.pii_counts,
                         metadata=self.metadata, received_at=t.received_at)


def _meta_text(value: MetaValue) -> str | None:
    """A metadata value as the masker reads it: strings, and numbers (an account number sent as one); else None.

    The Ticket contract keeps metadata flat (`MetaValue`), so there is nothing nested to walk.
    """
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value)


def _texts(ticket: Ticket) -> list[str]:
    """Everything `prepare` masks: normalised subject and body, then the metadata values."""
    texts = [normalise(x) for x in ((ticket.subject,) if ticket.subject else ()) + (ticket.body,)]
    return texts + [t for v in ticket.metadata.values() if (t := _meta_text(v)) is not None]


def prepare(ticket: Ticket, masker: Masker = safe_mask) -> Prepared:
    """Normalise subject and body, then mask PII in both and in the metadata values (keys stay as they are).

    If masking any of them failed, all are withheld.
    """
    subject = normalise(ticket.subject) if ticket.subject else ""
    body = normalise(ticket.body)
    masked_subject = masker(subject) if subject else MaskResult(text="")
    masked_body = masker(body)
    metadata: dict[str, MetaValue] = {}
    meta_failed = False
    for key, value in ticket.metadata.items():
        text = _meta_text(value)
        masked = masker(text) if text is not None else None
        meta_failed |= text is not None and masked is None
        metadata[key] = masked.text if masked is not None and masked.text != text else value
    if masked_subject is None or masked_body is None or meta_failed:
        return Prepared(ticket=ticket, subject="", body=WITHHELD, mask_failed=True)
    counts = dict(masked_body.counts)
    for kind, n in masked_subject.counts.items():
        counts[kind] = counts.get(kind, 0) + n
    return Prepared(ticket=ticket, subject=masked_subject.text, body=masked_body.text, pii_counts=counts,
                    metadata=metadata)


def prepare_many(tickets: Sequence[Ticket], masker: BatchMasker = safe_mask_many) -> list[Prepared]:
    """`prepare` for a micro-batch: one masking pass (one pass of the name model) over every text of every ticket."""
    texts = [x for t in tickets for x in _texts(t)]
    done = dict(zip(texts, masker(texts), strict=True)) if texts else {}
    return [prepare(t, masker=done.__getitem__) for t in tickets]
