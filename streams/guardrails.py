"""Output guardrails: a generated draft is kept only if it invents no contact details or amounts.

A draft fails when it mentions a URL, e-mail address, phone number (or any other PII the gate knows)
or an amount that is not in the ticket, the prompt's facts or the allow list; when a masked value
(`<EMAIL_1>`) appears that the ticket does not have; when a template slot is left unfilled
(`{name}`, `[Your Name]`, `<name>`, `XXX`); or when it is outside the length bounds. Reasons name the
kind of problem, never the offending value (it may be a hallucinated personal detail).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from triage.pii import find_pii

_URL = re.compile(
    r"(?i)\b(?:https?://|www\.)[^\s<>\"')\]]+|\b[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\."
    r"(?:com|org|net|io|co|uk|bank|info|biz|app|dev|me|eu|de|fr|us)(?:/[^\s<>\"')\]]*)?\b"
)
_EMAIL = re.compile(r"(?i)\b[a-z0-9._%+\-']+@[a-z0-9.\-]+\.[a-z]{2,24}\b")
_PHONE_LIKE = re.compile(r"(?<![\w.,])\+?\(?\d[\d \-.()]{5,}\d(?![\w]|[.,]\d)")
_CURRENCY = r"(?:[$€£¥]|\b(?:USD|EUR|GBP|CHF|JPY|AUD|CAD|SEK|NOK|PLN)\b)"
_AMOUNT = re.compile(
    rf"{_CURRENCY}\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:{_CURRENCY}|dollars?|euros?|pounds?)"
    r"|\b\d{1,3}(?:,\d{3})*\.\d{2}\b|\b\d+\.\d{2}\b"
)
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_PLACEHOLDER = re.compile(r"<[A-Z]+_\d+>")
_SLOT = re.compile(
    r"\{\{?\s*[A-Za-z_][\w .\-]{0,40}\}?\}|\[(?:[A-Za-z][A-Za-z _\-/']{1,40})\]|<(?![A-Z]+_\d+>)[a-z][a-z _\-]{1,40}>"
    r"|\b(?:XXX+|TBD|TODO|INSERT)\b"
)


@dataclass(frozen=True)
class DraftCheck:
    """The guardrails' result for one draft: ok, or the reasons it was refused."""

    ok: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _norm_url(u: str) -> str:
    u = u.lower().rstrip(".,;:!?/")
    u = re.sub(r"^https?://", "", u)
    return u.removeprefix("www.")


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _number(s: str) -> Decimal | None:
    raw = _NUMBER.search(s)
    if raw is None:
        return None
    try:
        return Decimal(raw.group(0).replace(",", ""))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Sources:
    """What a draft may repeat: values found in the ticket, the prompt's facts and the allow list."""

    urls: frozenset[str]
    emails: frozenset[str]
    digit_runs: frozenset[str]
    numbers: frozenset[Decimal]
    placeholders: frozenset[str]
    pii_values: frozenset[str]

    @classmethod
    def of(cls, texts: Iterable[str]) -> Sources:
        blob = "\n".join(texts)
        numbers = set()
        for m in _NUMBER.finditer(blob):
            n = _number(m.group(0))
            if n is not None:
                numbers.add(n)
        return cls(
            urls=frozenset(_norm_url(m.group(0)) for m in _URL.finditer(blob)),
            emails=frozenset(m.group(0).lower() for m in _EMAIL.finditer(blob)),
            digit_runs=frozenset(_digits(m.group(0)) for m in _PHONE_LIKE.finditer(blob)),
            numbers=frozenset(numbers),
            placeholders=frozenset(_PLACEHOLDER.findall(blob)),
            pii_values=frozenset(_alnum(p.value) for p in find_pii(blob)),
        )


def _alnum(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9@.]", "", s).lower()


def check_draft(
    draft: str,
    *,
    ticket: str,
    facts: Iterable[str] = (),
    allow: Iterable[str] = (),
    min_chars: int = 40,
    max_chars: int = 1200,
) -> DraftCheck:
    """Keep `draft` only if everything it states about contacts and money comes from the allowed sources."""
    text = draft.strip()
    reasons: list[str] = []
    if len(text) < min_chars:
        reasons.append(f"too short ({len(text)} < {min_chars} characters)")
    if len(text) > max_chars:
        reasons.append(f"too long ({len(text)} > {max_chars} characters)")
    src = Sources.of([ticket, *facts, *allow])
    if _SLOT.search(text):
        reasons.append("unfilled template slot")
    if any(p not in src.placeholders for p in _PLACEHOLDER.findall(text)):
        reasons.append("masked value not in the ticket")
    # Strip placeholders before looking for contact details so `<EMAIL_1>` is not read as text.
    plain = _PLACEHOLDER.sub(" ", text)
    emails = [m.group(0).lower() for m in _EMAIL.finditer(plain)]
    if any(e not in src.emails for e in emails):
        reasons.append("e-mail address not in the ticket or allow list")
    no_email = _EMAIL.sub(" ", plain)
    if any(_norm_url(m.group(0)) not in src.urls for m in _URL.finditer(no_email)):
        reasons.append("URL not in the ticket or allow list")
    for p in find_pii(plain):
        if p.type != "EMAIL" and _alnum(p.value) not in src.pii_values and _digits(p.value) not in src.digit_runs:
            reasons.append(f"{p.type.lower()} not in the ticket or allow list")
            break
    amounts = list(_AMOUNT.finditer(no_email))
    for m in _PHONE_LIKE.finditer(no_email):
        digits = _digits(m.group(0))
        inside_amount = any(a.start() <= m.start() and m.end() <= a.end() for a in amounts)
        if len(digits) >= 7 and not inside_amount and digits not in src.digit_runs:
            reasons.append("phone-like number not in the ticket or allow list")
            break
    for a in amounts:
        n = _number(a.group(0))
        if n is not None and n not in src.numbers:
            reasons.append("amount not in the ticket, facts or allow list")
            break
    return DraftCheck(ok=not reasons, reasons=tuple(dict.fromkeys(reasons)))
