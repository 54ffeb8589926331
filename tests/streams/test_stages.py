"""Unit tests of the pure stages: decode, normalise, prepare, canary assignment, decision building."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.simulator import MALFORMED, TicketGenerator
from streams.decide import Classified, build_decision, classify
from streams.ingest import MAX_ORIGINAL_CHARS, Source, dead_letter, decode_feedback, decode_ticket, reason_kind
from streams.models import LoadedModel, ModelSet, in_canary
from streams.normalise import normalise
from streams.prepare import WITHHELD, Prepared, prepare
from triage.dlq_crypto import DlqCipher
from triage.policy import bind, load_policy
from triage.schemas import DeadLetter, Feedback, HeadPrediction, LabelScore, Prediction, Ticket
from triage.settings import PROJECT_ROOT
from triage.taxonomy import KnownLabels, Taxonomy, bank

SRC = Source("tickets.raw", 2, 41, b"k")
CIPHER = DlqCipher(Fernet.generate_key(), "a test key")
REJECT = partial(dead_letter, seal=CIPHER.encrypt)  # a key of the test's own, not the state folder's
KNOWN = KnownLabels.of([bank()], "the bank")
POLICY = bind(load_policy(PROJECT_ROOT / "workspaces" / "bank" / "policy.yaml"), [("the bank", bank())])


def _ticket(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"ticket_id": "T-1", "channel": "email", "body": "My card has not arrived.",
                               "received_at": "2026-11-24T08:00:00+00:00"}
    base.update(kw)
    return base


def test_valid_ticket_decodes() -> None:
    t = decode_ticket(json.dumps(_ticket()).encode(), SRC, max_body_chars=1000)
    assert isinstance(t, Ticket) and t.ticket_id == "T-1"


def test_every_simulated_ticket_is_valid() -> None:
    gen = TicketGenerator(seed=1)
    for _ in range(200):
        assert isinstance(decode_ticket(json.dumps(gen.generate().message).encode(), SRC, max_body_chars=20_000),
                          Ticket)


def test_malformed_messages_become_dead_letters_with_reason_and_origin() -> None:
    for raw in MALFORMED:
        d = decode_ticket(raw, SRC, max_body_chars=1000, reject=REJECT)
        assert isinstance(d, DeadLetter), raw
        assert d.reason and (d.source_topic, d.partition, d.offset, d.key) == ("tickets.raw", 2, 41, "k")
        assert d.original_encrypted is not None and CIPHER.decrypt(d.original_encrypted) == raw
        assert d.original == raw.decode() if d.encoding == "utf-8" else d.original == f"<binary: {len(raw)} bytes>"


def test_a_dead_letter_holds_its_text_masked_and_its_reason_quotes_no_input() -> None:
    card, email = "4111 1111 1111 1111", "anna.schmidt@example.org"
    bad = [_ticket(channel="fax", body=f"card {card}, mail {email}"),
           _ticket(metadata={f"note {email}": ["a list"], "card": card}, extra_field=card),
           _ticket(body=f"{email} " + "x" * 2000)]
    for message in bad:
        d = decode_ticket(json.dumps(message).encode(), SRC, max_body_chars=1000, reject=REJECT)
        assert isinstance(d, DeadLetter) and d.original_encrypted is not None
        for value in (card, email, "4111"):
            assert value not in d.original and value not in d.reason, (d.original, d.reason)
    fb = {"event_id": "F-1", "ticket_id": "T-1", "kind": "correct", "intent": email,
          "created_at": "2026-11-24T08:00:00+00:00"}
    d = decode_feedback(json.dumps(fb).encode(), SRC, KNOWN, REJECT)
    assert isinstance(d, DeadLetter) and "unknown intent" in d.reason and email not in d.reason + d.original


def test_a_long_dead_letter_keeps_a_masked_excerpt_and_cuts_no_value_in_half() -> None:
    card = "4111 1111 1111 1111"
    for at in range(MAX_ORIGINAL_CHARS - 30, MAX_ORIGINAL_CHARS + 10, 7):  # the card across the cut
        raw = ("x" * at + f" {card} " + "y" * 5000).encode()
        d = REJECT("oversize: test", raw, SRC)
        assert len(d.original) < MAX_ORIGINAL_CHARS + 100 and "characters in all" in d.original
        assert "4111" not in d.original and "1111" not in d.original, at
        assert d.original_encrypted is not None and CIPHER.decrypt(d.original_encrypted) == raw


def test_each_kind_of_bad_input_is_named() -> None:
    cases = {
        b"\xff\xfe": "not utf-8",
        b"{oops": "not json",
        b"[1]": "not an object",
        json.dumps(_ticket(channel="fax")).encode(): "invalid ticket",
        json.dumps({"ticket_id": "T-2"}).encode(): "invalid ticket",
        json.dumps(_ticket(body="x" * 2000)).encode(): "oversize",
        json.dumps(_ticket(body="a\u0000b")).encode(): "invalid text",
        b"": "empty",
    }
    for raw, kind in cases.items():
        d = decode_ticket(raw, SRC, max_body_chars=1000, reject=REJECT)
        assert isinstance(d, DeadLetter)
        assert d.reason.startswith(kind), (raw, d.reason)
        assert reason_kind(d.reason) == kind


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_decode_never_raises_and_keeps_the_bytes(raw: bytes) -> None:
    out = decode_ticket(raw, SRC, max_body_chars=1000, reject=REJECT)
    if isinstance(out, DeadLetter):
        assert out.original_encrypted is not None and CIPHER.decrypt(out.original_encrypted) == raw
        assert "\x00" not in out.original


def test_feedback_is_checked_beyond_the_schema() -> None:
    ok = {"event_id": "F-1", "ticket_id": "T-1", "kind": "correct", "intent": "card_arrival",
          "created_at": "2026-11-24T08:00:00+00:00"}
    assert isinstance(decode_feedback(json.dumps(ok).encode(), SRC, KNOWN, REJECT), Feedback)
    for bad in ({**ok, "intent": "nope"}, {**ok, "intent": None}, {**ok, "kind": "reroute"}, {**ok, "kind": "x"}):
        d = decode_feedback(json.dumps(bad).encode(), SRC, KNOWN, REJECT)
        assert isinstance(d, DeadLetter), bad


def test_feedback_labels_are_the_deployed_models_labels() -> None:
    """A team's own intents are stored; the bank's are dead letters whose reason names the known set."""
    desk = Taxonomy(name="saas-desk", urgencies=[], intents={"billing": {}, "login_problem": {}})
    known = KnownLabels.of([desk], "model desk v1")
    ok = {"event_id": "F-1", "ticket_id": "T-1", "kind": "correct", "intent": "billing",
          "created_at": "2026-11-24T08:00:00+00:00"}
    assert isinstance(decode_feedback(json.dumps(ok).encode(), SRC, known, REJECT), Feedback)
    assert isinstance(decode_feedback(json.dumps({**ok, "intent": "out_of_scope"}).encode(), SRC, known, REJECT),
                      Feedback)
    d = decode_feedback(json.dumps({**ok, "intent": "card_arrival"}).encode(), SRC, known, REJECT)
    assert isinstance(d, DeadLetter)
    assert "not a label of model desk v1; they know billing, login_problem, out_of_scope" in d.reason
    d = decode_feedback(json.dumps({**ok, "urgency": "high"}).encode(), SRC, known, REJECT)
    assert isinstance(d, DeadLetter) and "no urgency" in d.reason


def test_normalise_strips_html_quotes_and_signature() -> None:
    text = ("<html><body><p>Hello,</p><p>My card&nbsp;has not arrived.</p><style>p{}</style></body></html>\n"
            "Kind regards,\nAnna Schmidt\n+44 7700 900123\n\nOn Mon, Anna wrote:\n> Thanks for your message\n> bye")
    out = normalise(text)
    assert "card has not arrived" in out
    for gone in ("<p>", "Anna", "Thanks for your message", "p{}", "regards"):
        assert gone not in out


def test_normalise_keeps_a_message_that_is_only_a_quote() -> None:
    assert normalise("> quoted only") == "> quoted only"
    assert normalise("   plain   text  ") == "plain text"


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_normalise_never_raises_and_keeps_visible_text(text: str) -> None:
    from streams.normalise import strip_html

    out = normalise(text)
    if strip_html(text).strip():
        assert out.strip()


def test_prepare_masks_pii_everywhere_it_goes() -> None:
    t = Ticket.model_validate(_ticket(subject="card 4111 1111 1111 1111",
                                      body="Write to anna.schmidt@example.org please. My card has not arrived."))
    p = prepare(t)
    assert "anna.schmidt@example.org" not in p.text and "4111" not in p.text
    assert sum(p.pii_counts.values()) >= 2
    row = p.row()
    assert "example.org" not in row.body_masked and "4111" not in row.subject_masked


def test_prepare_masks_metadata_values_and_keeps_the_keys() -> None:
    meta = {"contact": "write to anna.schmidt@example.org", "account": 4111111111111111, "vip": True,
            "source": "web", "n": 3}
    row = prepare(Ticket.model_validate(_ticket(metadata=meta))).row()
    assert set(row.metadata) == set(meta)
    assert "example.org" not in row.metadata["contact"] and "4111" not in str(row.metadata["account"])
    assert (row.metadata["vip"], row.metadata["source"], row.metadata["n"]) == (True, "web", 3)


def test_prepare_fails_closed_when_masking_fails() -> None:
    p = prepare(Ticket.model_validate(_ticket()), masker=lambda _t: None)
    assert p.mask_failed and p.body == WITHHELD and "card" not in p.text


def test_canary_assignment_is_sticky_and_near_the_percent() -> None:
    ids = [f"T-{i}" for i in range(4000)]
    share = sum(in_canary(i, 10.0) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [in_canary(i, 10.0) for i in ids] == [in_canary(i, 10.0) for i in ids]
    # Raising the percent only adds tickets to the canary, never moves one out.
    assert all(in_canary(i, 30.0) for i in ids if in_canary(i, 10.0))
    assert not any(in_canary(i, 0.0) for i in ids) and all(in_canary(i, 100.0) for i in ids)


def _pred(version: int, intent: str, conf: float, urgency: str = "normal") -> Prediction:
    def head(label: str, c: float) -> HeadPrediction:
        return HeadPrediction(label=label, confidence=c, top_k=[LabelScore(label=label, score=c)])

    return Prediction(model_name="m", model_version=version,
                      heads={"intent": head(intent, conf), "urgency": head(urgency, 0.9)})


class _Never:
    heads: dict[str, list[str]] = {}

    def predict(self, texts: list[str]) -> object:
        raise AssertionError("not called")


class _Recording:
    """A predictor that answers `intent` for every text and keeps the texts it was given."""

    heads: dict[str, list[str]] = {"intent": ["card_arrival", "complaint"], "urgency": ["normal"]}

    def __init__(self, intent: str) -> None:
        self.intent = intent
        self.seen: list[str] = []

    def predict(self, texts: list[str]) -> object:
        self.seen.extend(texts)
        pred = _pred(0, self.intent, 0.99)
        return SimpleNamespace(predictions=[pred.heads for _ in texts], latency_ms=float(len(texts)))


def _items(n: int) -> list[Prepared]:
    return [prepare(Ticket.model_validate(_ticket(ticket_id=f"T-{i}", body=f"ticket number {i}"))) for i in range(n)]


def test_a_canary_runs_only_on_its_sticky_share_and_the_champion_on_the_rest() -> None:
    champ, canary = _Recording("card_arrival"), _Recording("complaint")
    models = ModelSet(champion=LoadedModel("m", 1, champ), challenger=LoadedModel("m", 2, canary),
                      mode="canary", percent=10.0)
    items = _items(400)
    first = classify(models, items)
    again = classify(models, list(reversed(items)))  # another batch order: the same arms
    want = {p.ticket.ticket_id for p in items if in_canary(p.ticket.ticket_id, 10.0)}
    assert 20 < len(want) < 60
    arms = {p.ticket.ticket_id: c.arm for p, c in zip(items, first, strict=True)}
    assert {t for t, a in arms.items() if a == "canary"} == want
    assert arms == {p.ticket.ticket_id: c.arm for p, c in zip(reversed(items), again, strict=True)}
    # Each model classified its own arm only (twice: two batches), so the canary cost its share.
    assert len(canary.seen) == 2 * len(want) and len(champ.seen) == 2 * (400 - len(want))
    assert all(c.shadow is None and c.acting is not None for c in first)
    assert all((c.acting.heads["intent"].label == "complaint") == (c.arm == "canary") for c in first if c.acting)


def test_a_shadow_classifies_a_sticky_sample_beside_the_acting_champion() -> None:
    champ, shadow = _Recording("card_arrival"), _Recording("complaint")
    models = ModelSet(champion=LoadedModel("m", 1, champ), challenger=LoadedModel("m", 2, shadow), mode="shadow")
    items = _items(400)
    out = classify(models, items, shadow_percent=25.0)
    sampled = {p.ticket.ticket_id for p, c in zip(items, out, strict=True) if c.shadow is not None}
    assert sampled == {p.ticket.ticket_id for p in items if in_canary(p.ticket.ticket_id, 25.0)}
    assert len(shadow.seen) == len(sampled) and len(champ.seen) == 400 and 70 < len(sampled) < 130
    assert all(c.arm == "champion" and c.acting is not None for c in out)
    d = build_decision(items[0], out[0], models, POLICY, "m", {})
    assert (d.challenger is not None) == (items[0].ticket.ticket_id in sampled)


def test_build_decision_canary_arm_acts_alone() -> None:
    champ, canary = LoadedModel("m", 1, _Never()), LoadedModel("m", 2, _Never())
    models = ModelSet(champion=champ, challenger=canary, mode="canary", percent=100.0)
    t = Ticket.model_validate(_ticket(received_at=(datetime.now(UTC) - timedelta(milliseconds=50)).isoformat()))
    item = prepare(t)
    d = build_decision(item, Classified(_pred(2, "complaint", 0.99), arm="canary", inference_ms=4.0),
                       models, POLICY, "m", {"decode": 0.1})
    assert (d.arm, d.model_version, d.challenger, d.challenger_mode) == ("canary", 2, None, None)
    assert d.route == "human_queue" and d.rule_id == "denied-to-human"  # complaint is on the deny list
    assert d.latency_ms["inference"] == 4.0 and d.latency_ms["e2e"] >= 50
    assert "challenger_inference" not in d.latency_ms
    assert d.policy_version == POLICY.version

    shadow = ModelSet(champion=champ, challenger=canary, mode="shadow", percent=0.0)
    d2 = build_decision(item, Classified(_pred(1, "card_arrival", 0.99, "low"), _pred(2, "complaint", 0.99),
                                         inference_ms=3.0, shadow_ms=4.0), shadow, POLICY, "m", {})
    assert (d2.arm, d2.model_version, d2.route, d2.challenger_mode) == ("champion", 1, "auto_resolve", "shadow")
    assert d2.challenger is not None and d2.latency_ms["challenger_inference"] == 4.0


def test_build_decision_without_a_model_goes_to_a_person() -> None:
    item = prepare(Ticket.model_validate(_ticket()))
    d = build_decision(item, Classified(None), ModelSet(champion=None), POLICY, "m", {})
    assert (d.route, d.rule_id, d.model_version) == ("human_queue", "builtin:no-model", 0)


def test_policy_file_in_the_repo_is_valid(tmp_path: Path) -> None:
    assert POLICY.spec.rules and POLICY.version.startswith(POLICY.spec.version + "@")
