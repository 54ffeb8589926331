from __future__ import annotations

import csv
import random
from collections import Counter

from apps.simulator import TicketGenerator, feedback_for, iban_complete, luhn_complete, write_csv
from triage.schemas import Feedback, Ticket
from triage.taxonomy import bank

INTENTS, URGENCIES, OOD_LABEL = bank().intent_names, tuple(bank().urgencies), bank().out_of_scope


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def test_checksums_are_valid():
    good = luhn_complete("411111111111111")
    assert _luhn_ok(good) and len(good) == 16
    assert not _luhn_ok(good[:-1] + str((int(good[-1]) + 1) % 10))
    assert _iban_ok(iban_complete("DE", "370400440532013000"))
    assert iban_complete("GB", "NWBK60161331926819") == "GB29NWBK60161331926819"  # the ISO 13616 example


def test_generated_tickets_validate_and_planted_pii_passes_checksums():
    gen = TicketGenerator(seed=7, pii_rate=1.0)
    kinds: Counter[str] = Counter()
    for t in gen.stream(400):
        Ticket.model_validate(t.message)
        assert t.intent in INTENTS and t.urgency in URGENCIES
        for kind, values in t.pii.items():
            kinds[kind] += 1
            for v in values:
                assert v in t.message["body"]
                if kind == "CARD":
                    assert _luhn_ok(v)
                if kind == "IBAN":
                    assert _iban_ok(v)
    assert set(kinds) == {"EMAIL", "PHONE", "CARD", "IBAN"}


def test_same_seed_same_traffic_and_styles_vary():
    a = [t.message["body"] for t in TicketGenerator(seed=3).stream(50)]
    b = [t.message["body"] for t in TicketGenerator(seed=3).stream(50)]
    assert a == b
    channels = Counter(t.message["channel"] for t in TicketGenerator(seed=3).stream(300))
    assert {"email", "chat"} <= set(channels)


def test_drift_mode_shifts_intent_mix_and_vocabulary():
    n = 3000
    gen = TicketGenerator(seed=1, drift_after=n)
    before = [gen.generate() for _ in range(n)]
    after = [gen.generate() for _ in range(n)]
    share = lambda ts, i: sum(t.intent == i for t in ts) / len(ts)  # noqa: E731
    assert share(after, "top_up_failed") > 2 * share(before, "top_up_failed")
    assert not any(t.message["metadata"]["drift"] for t in before)
    assert sum("crypto" in t.message["body"] or "vault" in t.message["body"] for t in after) > n * 0.1


def test_csv_for_training(tmp_path):
    path = tmp_path / "sim.csv"
    write_csv(path, 500, seed=2, ood_rate=0.1)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 500
    assert {r["intent"] for r in rows} <= set(INTENTS) | {OOD_LABEL}
    assert any(r["intent"] == OOD_LABEL for r in rows)
    assert all(r["text"].strip() for r in rows)


def test_feedback_confirms_right_decisions_and_corrects_wrong_ones():
    rng = random.Random(0)
    decision = {
        "ticket_id": "T-1",
        "prediction": {"heads": {"intent": {"label": "card_arrival"}, "urgency": {"label": "low"}}},
    }
    ok = Feedback.model_validate(feedback_for("card_arrival", "low", decision, rng))
    wrong = Feedback.model_validate(feedback_for("fraud_report", "critical", decision, rng))
    assert ok.kind == "confirm" and wrong.kind == "correct"
    assert wrong.intent == "fraud_report" and wrong.ticket_id == "T-1"
