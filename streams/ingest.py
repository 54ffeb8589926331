"""Decode and validate a raw Kafka message into a contract, or explain why not (a dead letter).

Pure: the agent passes the bytes and where they came from; nothing here raises on bad input.
A dead letter holds nothing raw: its text is masked, its reason never quotes the input, and the
exact bytes are kept only encrypted, for replay.
"""

from __future__ import annotations

import base64
import json
import os.path
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from triage import dlq_crypto
from triage.pii import MaskResult, safe_mask
from triage.schemas import DeadLetter, Feedback, Ticket
from triage.taxonomy import KnownLabels, describe_labels

M = TypeVar("M", bound=BaseModel)
Masker = Callable[[str], MaskResult | None]
Seal = Callable[[bytes], bytes]
# Reason texts stay short and stable: metrics label dead letters by the part before the colon.
MAX_REASON_CHARS = 500
# The masked text kept in the clear is an excerpt: masking time grows faster than the text (a 1 MB body
# takes minutes), and the full original is kept encrypted anyway. The margin is masked past the cut so
# that a value straddling it is never kept half unmasked.
MAX_ORIGINAL_CHARS = 4_000
_MARGIN = 200
WITHHELD = "[withheld: PII masking failed]"


@dataclass(frozen=True)
class Source:
    """Where a message came from: enough to find and replay it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None


Reject = Callable[[str, bytes | None, Source], DeadLetter]  # reason, raw bytes, origin -> dead letter


def masked_excerpt(text: str, masker: Masker = safe_mask) -> str:
    """`text` masked, cut to about MAX_ORIGINAL_CHARS; WITHHELD when masking failed.

    A long text is masked twice, to the cut and a margin past it, and only what both agree on is kept:
    a value the cut splits is masked in the longer pass, so the shorter pass's unmasked piece differs.
    """
    if len(text) <= MAX_ORIGINAL_CHARS:
        result = masker(text)
        return result.text if result is not None else WITHHELD
    short, long = masker(text[:MAX_ORIGINAL_CHARS]), masker(text[:MAX_ORIGINAL_CHARS + _MARGIN])
    if short is None or long is None:
        return WITHHELD
    same = os.path.commonprefix([short.text, long.text])
    kept = same[:max(same.rfind(" "), same.rfind("\n"), 0)]  # no half word or half placeholder
    return f"{kept} [cut: {len(text)} characters in all]"


def dead_letter(reason: str, raw: bytes | None, src: Source, *, masker: Masker = safe_mask,
                seal: Seal = dlq_crypto.encrypt) -> DeadLetter:
    """A dead letter: UTF-8 text masked (other bytes only by their size), the exact bytes encrypted by `seal`.

    `reason` must not quote the input: every reason built in this module names a position, a field or a limit.
    """
    data = raw or b""
    try:
        text = data.decode("utf-8")
        if "\x00" in text:  # valid UTF-8, but PostgreSQL text cannot hold NUL
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL")
        original, encoding = masked_excerpt(text, masker), "utf-8"
    except UnicodeDecodeError:
        original, encoding = f"<binary: {len(data)} bytes>", "binary"
    key: str | None = None
    if src.key is not None:
        try:
            key = src.key.decode("utf-8")
        except UnicodeDecodeError:
            key = "base64:" + base64.b64encode(src.key).decode("ascii")
    return DeadLetter(reason=reason[:MAX_REASON_CHARS], source_topic=src.topic, partition=src.partition,
                      offset=src.offset, original=original, encoding=encoding, key=key,
                      original_encrypted=seal(data))


def _where(loc: tuple[int | str, ...], fields: set[str]) -> str:
    """An error's location by field names and list indexes; a key that came with the input shows as <key>."""
    parts: list[str] = []
    for p in loc:
        if not isinstance(p, int) and p not in fields:
            parts.append("<key>")
            break
        parts.append(str(p))
    return ".".join(parts) or "message"


def _describe(exc: ValidationError, fields: set[str]) -> str:
    """Pydantic's messages name the rule, not the value; the locations drop the input's own keys."""
    parts = [f"{_where(err['loc'], fields)}: {err['msg']}" for err in exc.errors()[:5]]
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def decode_json(raw: bytes | None, model: type[M], src: Source, reject: Reject = dead_letter) -> M | DeadLetter:
    """Bytes -> validated contract, or a dead letter (made by `reject`) whose reason says what was wrong."""
    if raw is None or raw == b"":
        return reject("empty: message has no value", raw, src)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(f"not utf-8: byte {exc.start} cannot be decoded", raw, src)
    if "\x00" in text or "\\u0000" in text:
        return reject("invalid text: contains NUL characters, which cannot be stored", raw, src)
    try:
        data: Any = json.loads(text)
    except ValueError as exc:  # the json module's messages name a position, never the text
        return reject(f"not json: {exc}", raw, src)
    if not isinstance(data, dict):
        return reject(f"not an object: JSON {type(data).__name__} instead of an object", raw, src)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return reject(f"invalid {model.__name__.lower()}: {_describe(exc, set(model.model_fields))}", raw, src)


def decode_ticket(raw: bytes | None, src: Source, *, max_body_chars: int,
                  reject: Reject = dead_letter) -> Ticket | DeadLetter:
    """A valid ticket, or a dead letter (not UTF-8, not JSON, missing fields, unknown channel, oversize)."""
    result = decode_json(raw, Ticket, src, reject)
    if isinstance(result, Ticket) and len(result.body) > max_body_chars:
        return reject(f"oversize: body has {len(result.body)} characters, the limit is {max_body_chars} "
                      "(TRIAGE_MAX_BODY_CHARS)", raw, src)
    return result


def check_feedback(fb: Feedback, known: KnownLabels) -> str | None:
    """None when a feedback event is usable as a label, else why not (the masked original shows the value).

    Intents and urgencies must be labels of a deployed model (`known`): the team's own taxonomy.
    """
    if fb.intent is not None and fb.intent not in known.intents:
        return (f"unknown intent (not a label of {known.source}; they know "
                f"{describe_labels(sorted(known.intents))})")
    if fb.urgency is not None and fb.urgency not in known.urgencies:
        return (f"unknown urgency (not a label of {known.source}; they know "
                f"{describe_labels(sorted(known.urgencies)) or 'no urgency'})")
    if fb.kind == "correct" and fb.intent is None and fb.urgency is None:
        return "kind 'correct' needs an intent or an urgency"
    if fb.kind == "reroute" and fb.route is None:
        return "kind 'reroute' needs a route"
    return None


def decode_feedback(raw: bytes | None, src: Source, known: KnownLabels,
                    reject: Reject = dead_letter) -> Feedback | DeadLetter:
    """A valid feedback event, or a dead letter with the reason."""
    result = decode_json(raw, Feedback, src, reject)
    if isinstance(result, Feedback) and (problem := check_feedback(result, known)) is not None:
        return reject(f"invalid feedback: {problem}", raw, src)
    return result


def reason_kind(reason: str) -> str:
    """The stable part of a dead letter's reason, for a low-cardinality metric label."""
    return reason.split(":", 1)[0].strip()[:40] or "unknown"
