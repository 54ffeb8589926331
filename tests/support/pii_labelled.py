"""Score the PII gate on the hand-labelled tickets of tests/data/pii/ (written independently of the detector).

A planted value counts as caught when every letter and digit of every occurrence of it is inside some
mask (of any type: the gate's job is that nothing personal is left; the typed figure is reported too).
A mask is a false positive when it overlaps no planted value. Business facts (`keep`) must appear
unchanged in the masked text. Bars: recall >= 0.98 over all kinds and >= 0.90 per kind, facts kept
>= 0.95 (issue 18).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.pii import find_pii_many, mask_many

DATA = Path(__file__).resolve().parent.parent / "data" / "pii"
# `dev`, `dev2`, `dev3`: tuned on; `test`: written after the tuning and only measured (tests/data/pii/README.md).
SPLITS = ("dev", "dev2", "dev3", "test")
RECALL_ALL_MIN = 0.98
RECALL_KIND_MIN = 0.90
KEEP_MIN = 0.95


@dataclass(frozen=True)
class Labelled:
    id: str
    text: str
    pii: list[tuple[str, int, int]]  # (type, start, end) character offsets
    keep: list[str]


def load(split: str) -> list[Labelled]:
    """The `dev` (for tuning) or `test` (held out) split."""
    rows = [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [Labelled(r["id"], r["text"], [(p["type"], p["start"], p["end"]) for p in r["spans"]],
                     list(r.get("facts", []))) for r in rows]


def _covered(text: str, span: tuple[int, int], masks: list[tuple[int, int]]) -> bool:
    return all(any(a <= i < b for a, b in masks) for i in range(*span) if text[i].isalnum())


def f2(precision: float, recall: float) -> float:
    return 5 * precision * recall / (4 * precision + recall) if precision + recall else 0.0


def score(tickets: list[Labelled]) -> dict[str, Any]:
    texts = [t.text for t in tickets]
    found_all = find_pii_many(texts)
    masked = mask_many(texts)
    kinds: dict[str, dict[str, Any]] = {}
    missed: dict[str, list[str]] = {}
    false_pos: dict[str, list[str]] = {}
    keep_total = keep_ok = 0
    lost: list[str] = []

    def kind(k: str) -> dict[str, Any]:
        return kinds.setdefault(k, {"planted": 0, "caught": 0, "caught_as_type": 0, "found": 0, "true_pos": 0})

    for ticket, found, result in zip(tickets, found_all, masked, strict=True):
        spans = [(f.start, f.end) for f in found]
        for k, start, end in ticket.pii:
            c = kind(k)
            c["planted"] += 1
            if _covered(ticket.text, (start, end), spans):
                c["caught"] += 1
            else:
                missed.setdefault(k, []).append(f"{ticket.id}: {ticket.text[start:end]!r}")
            typed = [(f.start, f.end) for f in found if f.type == k]
            c["caught_as_type"] += _covered(ticket.text, (start, end), typed)
        for f in found:
            c = kind(f.type)
            c["found"] += 1
            if any(s < f.end and f.start < e for _, s, e in ticket.pii):
                c["true_pos"] += 1
            else:
                false_pos.setdefault(f.type, []).append(f"{ticket.id}: {f.value!r}")
        for fact in ticket.keep:
            keep_total += 1
            if fact in result.text:
                keep_ok += 1
            else:
                lost.append(f"{ticket.id}: {fact!r}")
    for c in kinds.values():
        c["recall"] = round(c["caught"] / c["planted"], 4) if c["planted"] else None
        c["precision"] = round(c["true_pos"] / c["found"], 4) if c["found"] else None
        c["f2"] = round(f2(c["precision"], c["recall"]), 4) if c["recall"] is not None and c["precision"] else None
    planted_n = sum(c["planted"] for c in kinds.values())
    found_n = sum(c["found"] for c in kinds.values())
    recall = sum(c["caught"] for c in kinds.values()) / max(planted_n, 1)
    precision = sum(c["true_pos"] for c in kinds.values()) / max(found_n, 1)
    keep_rate = keep_ok / max(keep_total, 1)
    per_kind_ok = all(c["recall"] >= RECALL_KIND_MIN for c in kinds.values() if c["recall"] is not None)
    return {
        "tickets": len(tickets), "planted": planted_n, "found": found_n,
        "recall": round(recall, 4), "precision": round(precision, 4), "f2": round(f2(precision, recall), 4),
        "facts": keep_total, "facts_kept": round(keep_rate, 4),
        "passed": recall >= RECALL_ALL_MIN and per_kind_ok and keep_rate >= KEEP_MIN,
        "kinds": dict(sorted(kinds.items())),
        "examples": {"missed": missed, "false_positives": false_pos, "facts_lost": lost},
    }
