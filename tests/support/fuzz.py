"""Hostile input (scenario 6): hypothesis over the ticket and feedback decoders and the policy loader.

A decoder must never raise: every input is a contract or a dead letter whose reason is non-empty and whose
original text PostgreSQL can store. The policy loader must return a policy or raise `PolicyError` with a
message naming the source and line; any other exception is a crash. Crashes are collected, not raised,
so one run reports all of them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from apps.simulator import TicketGenerator
from streams.ingest import Source, decode_feedback, decode_ticket
from triage.names import TOPIC_FEEDBACK, TOPIC_RAW
from triage.policy import PolicyError, parse_policy
from triage.schemas import DeadLetter, Ticket
from triage.settings import PROJECT_ROOT
from triage.taxonomy import KnownLabels, bank

MAX_BODY = 20_000
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
                     st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                                max_size=2))


def _ticket() -> dict[str, Any]:
    return {"ticket_id": "T-fuzz-1", "channel": "email", "customer_ref": "C-1", "subject": "Card",
            "body": "Where is my card?", "received_at": datetime.now(UTC).isoformat(), "metadata": {"k": "v"}}


def _feedback() -> dict[str, Any]:
    return {"event_id": "F-fuzz-1", "ticket_id": "T-fuzz-1", "kind": "correct", "intent": "card_arrival",
            "urgency": "normal", "reviewer": "r", "created_at": datetime.now(UTC).isoformat()}


def _mutated(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A valid message with fields dropped, replaced by hostile values, or added; then serialised or broken."""
    keys = sorted(base)
    edits = st.lists(st.tuples(st.sampled_from([*keys, "extra"]), st.one_of(st.just("<drop>"), _SCALARS)),
                     max_size=4)

    def build(changes: list[tuple[str, Any]], mode: int, cut: int) -> bytes:
        msg = dict(base)
        for k, v in changes:
            if v == "<drop>":
                msg.pop(k, None)
            else:
                msg[k] = v
        try:
            text = json.dumps(msg, allow_nan=True)
        except (TypeError, ValueError):
            text = str(msg)
        data = text.encode("utf-8", "surrogatepass")
        if mode == 1:
            return data[: cut % (len(data) + 1)]
        if mode == 2:
            return data.replace(b'"', b"\x00", 1)
        if mode == 3:
            return b"\xff\xfe" + data
        return data

    return st.builds(build, edits, st.integers(0, 5), st.integers(0, 10_000))


def messages(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                         inner, max_size=3),
                     max_leaves=8).map(lambda v: json.dumps(v, allow_nan=True).encode()),
        _mutated(base),
    )


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a parsed policy (containers too, so whole sections get replaced or dropped)."""
    here = [path] if path else []
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))] + here
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))] + here
    return here


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        node = node[p]
    if value == "<drop>" and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def policies() -> st.SearchStrategy[str]:
    text = (PROJECT_ROOT / "workspaces" / "bank" / "policy.yaml").read_text(encoding="utf-8")
    base = yaml.safe_load(text)
    paths = _leaves(base)

    def build(changes: list[tuple[int, Any]]) -> str:
        data = json.loads(json.dumps(base))
        for idx, value in changes:
            try:
                _set(data, paths[idx % len(paths)], value)
            except (KeyError, IndexError, TypeError):
                continue
        return str(yaml.safe_dump(data, allow_unicode=True))

    return st.one_of(
        st.text(max_size=400),
        st.builds(build, st.lists(st.tuples(st.integers(0, 10_000), st.one_of(st.just("<drop>"), _SCALARS)),
                                  min_size=1, max_size=3)),
        st.integers(0, len(text)).map(lambda n: text[:n]),
    )


def _check_dead(d: DeadLetter) -> str | None:
    if not d.reason.strip():
        return "dead letter without a reason"
    if d.encoding == "utf-8" and "\x00" in d.original:
        return "dead letter text holds NUL (PostgreSQL cannot store it)"
    return None


def run_decoders(cases: int, seed_: int) -> dict[str, Any]:
    """`cases` hypothesis examples: 40 % tickets, 30 % feedback, 30 % policies. Returns counts and failures."""
    out: dict[str, Any] = {"cases": Counter(), "outcomes": Counter(), "crashes": [], "unexplained": []}
    share = {"ticket": int(cases * 0.4), "feedback": int(cases * 0.3)}
    share["policy"] = cases - share["ticket"] - share["feedback"]
    src_t = Source(topic=TOPIC_RAW, partition=0, offset=0)
    src_f = Source(topic=TOPIC_FEEDBACK, partition=0, offset=0)

    def record(kind: str, value: Any, fn: Any) -> None:
        out["cases"][kind] += 1
        try:
            result = fn(value)
        except PolicyError as exc:
            out["outcomes"][f"{kind}: clear error"] += 1
            msg = str(exc)
            if not msg.startswith("<fuzz>: ") or "line " not in msg:
                out["unexplained"].append({"kind": kind, "input": repr(value)[:200], "error": msg[:200]})
            return
        except Exception as exc:  # noqa: BLE001 - a crash is the finding
            out["crashes"].append({"kind": kind, "input": repr(value)[:300], "error": f"{type(exc).__name__}: {exc}"
                                                                                       [:300]})
            return
        if isinstance(result, DeadLetter):
            out["outcomes"][f"{kind}: dead letter"] += 1
            problem = _check_dead(result)
            if problem:
                out["unexplained"].append({"kind": kind, "input": repr(value)[:200], "error": problem})
        else:
            out["outcomes"][f"{kind}: accepted"] += 1

    def common(n: int) -> Any:
        return settings(max_examples=n, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck))

    @seed(seed_)
    @common(share["ticket"])
    @given(messages(_ticket()))
    def tickets(raw: bytes) -> None:
        record("ticket", raw, lambda v: decode_ticket(v, src_t, max_body_chars=MAX_BODY))

    @seed(seed_ + 1)
    @common(share["feedback"])
    @given(messages(_feedback()))
    def feedback(raw: bytes) -> None:
        record("feedback", raw, lambda v: decode_feedback(v, src_f, KnownLabels.of([bank()], "the bank")))

    @seed(seed_ + 2)
    @common(share["policy"])
    @given(policies())
    def policy(text: str) -> None:
        record("policy", text, lambda v: parse_policy(v, "<fuzz>"))

    for prop in (tickets, feedback, policy):
        prop()
    return {"cases": dict(out["cases"]), "total": sum(out["cases"].values()), "outcomes": dict(out["outcomes"]),
            "crashes": out["crashes"][:20], "n_crashes": len(out["crashes"]),
            "unexplained": out["unexplained"][:20], "n_unexplained": len(out["unexplained"])}


def hostile_sample(n: int, seed_: int) -> list[tuple[bytes, str | None]]:
    """`n` hostile messages for tickets.raw (no hypothesis: plain seeded mutations) with the ticket id a valid
    one must be decided under, or None when the decoder dead-letters it."""
    rng = random.Random(seed_)
    gen = TicketGenerator(seed=seed_)
    src = Source(topic=TOPIC_RAW, partition=0, offset=0)
    out: list[tuple[bytes, str | None]] = []
    hostile: list[Any] = [None, 0, -1, 1e308, "", " ", "\x00", "\u202e", "x" * 5000, [], {}, True, "😀" * 50]
    while len(out) < n:
        msg = gen.generate().message
        mode = rng.randrange(6)
        if mode == 0:
            raw = rng.randbytes(rng.randrange(1, 200))
        elif mode == 1:
            msg[rng.choice(sorted(msg))] = rng.choice(hostile)
            raw = json.dumps(msg).encode()
        elif mode == 2:
            msg.pop(rng.choice(sorted(msg)))
            raw = json.dumps(msg).encode()
        elif mode == 3:
            data = json.dumps(msg).encode()
            raw = data[: rng.randrange(len(data))]
        elif mode == 4:
            msg["body"] = msg["body"] + "\u0000" if rng.random() < 0.5 else "y" * (MAX_BODY + 1)
            raw = json.dumps(msg).encode()
        else:
            raw = json.dumps(msg).encode()  # valid: must become a decision
        result = decode_ticket(raw, src, max_body_chars=MAX_BODY)
        out.append((raw, result.ticket_id if isinstance(result, Ticket) else None))
    return out


def hostile_feedback_sample(n: int, seed_: int) -> list[bytes]:
    rng = random.Random(seed_ + 99)
    out: list[bytes] = []
    for i in range(n):
        fb = _feedback()
        fb["event_id"] = f"F-fz-{seed_}-{i}"
        if rng.random() < 0.6:  # any field but the event id, so each event stays one outcome
            fb[rng.choice(sorted(k for k in fb if k != "event_id"))] = rng.choice([None, 5, "", "not-a-label", [],
                                                                                 "x" * 300])
        out.append(json.dumps(fb).encode() if rng.random() < 0.9 else rng.randbytes(40))
    return out
