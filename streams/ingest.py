"""Decode and validate a raw Kafka message into a contract, or explain why not (a dead letter).

Pure: the agent passes the bytes and where they came from; nothing here raises on bad input.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from triage.labels import INTENTS, OOD_LABEL, URGENCIES
from triage.schemas import DeadLetter, Feedback, Ticket

M = TypeVar("M", bound=BaseModel)
# Reason texts stay short and stable: metrics label dead letters by the part before the colon.
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Source:
    """Where a message came from: enough to find and replay it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None


def dead_letter(reason: str, raw: bytes | None, src: Source) -> DeadLetter:
    """A dead letter keeping the original bytes: as text when they are UTF-8, else base64."""
    data = raw or b""
    try:
        original, encoding = data.decode("utf-8"), "utf-8"
        if "\x00" in original:  # valid UTF-8, but PostgreSQL text cannot hold NUL
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL")
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(data).decode("ascii"), "base64"
    key: str | None = None
    if src.key is not None:
        try:
            key = src.key.decode("utf-8")
        except UnicodeDecodeError:
            key = "base64:" + base64.b64encode(src.key).decode("ascii")
    return DeadLetter(reason=reason[:MAX_REASON_CHARS], source_topic=src.topic, partition=src.partition,
                      offset=src.offset, original=original, encoding=encoding, key=key)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def decode_json(raw: bytes | None, model: type[M], src: Source) -> M | DeadLetter:
    """Bytes -> validated contract, or a dead letter whose reason says what was wrong."""
    if raw is None or raw == b"":
        return dead_letter("empty: message has no value", raw, src)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead_letter(f"not utf-8: byte {exc.start} cannot be decoded", raw, src)
    if "\x00" in text or "\\u0000" in text:
        return dead_letter("invalid text: contains NUL characters, which cannot be stored", raw, src)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return dead_letter(f"not json: {exc}", raw, src)
    if not isinstance(data, dict):
        return dead_letter(f"not an object: JSON {type(data).__name__} instead of an object", raw, src)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return dead_letter(f"invalid {model.__name__.lower()}: {_describe(exc)}", raw, src)


def decode_ticket(raw: bytes | None, src: Source, *, max_body_chars: int) -> Ticket | DeadLetter:
    """A valid ticket, or a dead letter (not UTF-8, not JSON, missing fields, unknown channel, oversize)."""
    result = decode_json(raw, Ticket, src)
    if isinstance(result, Ticket) and len(result.body) > max_body_chars:
        return dead_letter(f"oversize: body has {len(result.body)} characters, the limit is {max_body_chars} "
                           "(TRIAGE_MAX_BODY_CHARS)", raw, src)
    return result


FEEDBACK_INTENTS = frozenset((*INTENTS, OOD_LABEL))


def check_feedback(fb: Feedback) -> str | None:
    """None when a feedback event is usable as a label, else why not."""
    if fb.intent is not None and fb.intent not in FEEDBACK_INTENTS:
        return f"unknown intent {fb.intent!r}"
    if fb.urgency is not None and fb.urgency not in URGENCIES:
        return f"unknown urgency {fb.urgency!r}"
    if fb.kind == "correct" and fb.intent is None and fb.urgency is None:
        return "kind 'correct' needs an intent or an urgency"
    if fb.kind == "reroute" and fb.route is None:
        return "kind 'reroute' needs a route"
    return None


def decode_feedback(raw: bytes | None, src: Source) -> Feedback | DeadLetter:
    """A valid feedback event, or a dead letter with the reason."""
    result = decode_json(raw, Feedback, src)
    if isinstance(result, Feedback) and (problem := check_feedback(result)) is not None:
        return dead_letter(f"invalid feedback: {problem}", raw, src)
    return result


def reason_kind(reason: str) -> str:
    """The stable part of a dead letter's reason, for a low-cardinality metric label."""
    return reason.split(":", 1)[0].strip()[:40] or "unknown"
