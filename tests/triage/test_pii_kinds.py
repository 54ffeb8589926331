"""PII gate, the kinds that support tickets carry beyond the structured ones: names (a model plus context),
addresses, postcodes, dates of birth, bank accounts, documents, IPs, URLs with tokens; and the formats
that Presidio's users report as missed or misread."""

from __future__ import annotations

import pytest

from triage import pii, pii_ner
from triage.pii import find_pii, mask, mask_many, safe_mask_many


def masked_values(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in find_pii(text):
        out.setdefault(f.type, set()).add(f.value)
    return out


CASES = [
    ("Thanks, Maria Gonzalez, 12 Baker Street, London NW1 6XE",
     {"PERSON": {"Maria Gonzalez"}, "ADDRESS": {"12 Baker Street"}, "POSTCODE": {"NW1 6XE"}}),
    ("hi, this is john smith and my card was declined", {"PERSON": {"john smith"}}),
    ("Regards,\nChidi Okafor\nFlat 3, 27 Kingsley Road\nLeeds LS6 2AB",
     {"PERSON": {"Chidi Okafor"}, "ADDRESS": {"Flat 3, 27 Kingsley Road"}, "POSTCODE": {"LS6 2AB"}}),
    ("On Tue, 3 Mar, Sarah Lee <sarah.lee@example.com> wrote:\n> please reset it",
     {"PERSON": {"Sarah Lee"}, "EMAIL": {"sarah.lee@example.com"}}),
    ("My DOB is 14/03/1987 and the order was placed on 12/03/2024", {"DOB": {"14/03/1987"}}),
    ("sort code 20-45-77, account number 31926819", {"BANK_ACCOUNT": {"20-45-77", "31926819"}}),
    ("routing number 021000021 account 000123456789", {"BANK_ACCOUNT": {"021000021", "000123456789"}}),
    ("my passport number is 533401372", {"PASSPORT": {"533401372"}}),
    ("PIN 1234, and the one-time code you sent was 448 190", {"SECRET": {"1234", "448 190"}}),
    ("Error AUTH-OTP-03. Number registered +353 87 555 0129.", {"PHONE": {"+353 87 555 0129"}}),
    ("driving licence MORGA753116SM9IJ", {"DRIVING_LICENCE": {"MORGA753116SM9IJ"}}),
    ("login from 81.2.69.160 and 2001:db8::8a2e:370:7334 failed", {"IP": {"81.2.69.160", "2001:db8::8a2e:370:7334"}}),
    ("the link https://bank.example/reset?token=9f8e7d6c5b4a expired",
     {"URL": {"https://bank.example/reset?token=9f8e7d6c5b4a"}}),
    ("send it to 12 rue de la Paix, 75002 Paris", {"ADDRESS": {"12 rue de la Paix"}, "POSTCODE": {"75002"}}),
    ("Hauptstraße 12, 10115 Berlin", {"ADDRESS": {"Hauptstraße 12"}, "POSTCODE": {"10115"}}),
    ("1600 Pennsylvania Ave Apt 4B, Washington, DC 20500",
     {"ADDRESS": {"1600 Pennsylvania Ave Apt 4B"}, "POSTCODE": {"20500"}}),
    # Reported as missed by Presidio's users: a phone glued to text, ...
    ("call me on07700900123 please", {"PHONE": {"07700900123"}}),
    ("tel:+447700900123", {"PHONE": {"+447700900123"}}),
    # ... an IBAN read as a location, ...
    ("Please refund to GB82 WEST 1234 5698 7654 32 today", {"IBAN": {"GB82 WEST 1234 5698 7654 32"}}),
    # ... and 7-digit numbers read as names.
    ("Order 4471920 arrived broken, case 1234567", {}),
]

KEPT = [
    "I have 2 cards on the way and order 1234567 for £49.99 from Tesco",
    "The order date was 12/03/2024 and it was delivered on 2024-03-15",
    "Branch 0452 in Manchester could not help with REF 4471920",
    "See https://shop.example.com/help/returns for the returns policy",
    "Version 3.12.1 of the app crashes on login",
    "I reset my password yesterday",
    "Can I pay with my Mastercard or Visa at Lidl?",
    "my transefr has been pending for 4 days.",  # the model reads this lower-case typo as a name
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_each_kind_is_found_in_context(text, expected):
    found = masked_values(text)
    for kind, values in expected.items():
        assert values <= found.get(kind, set()), (kind, found)
    if not expected:
        assert found == {}


@pytest.mark.parametrize("text", KEPT)
def test_business_facts_are_kept(text):
    assert mask(text).text == text, find_pii(text)


def test_mask_many_equals_mask_one_by_one():
    texts = [t for t, _ in CASES] + KEPT
    assert [r.text for r in mask_many(texts)] == [mask(t).text for t in texts]


def test_a_long_text_is_read_in_windows_and_names_far_in_are_found():
    text = ("My card was declined again. " * 300) + "Thanks, Priya Raman"
    assert len(text) > pii_ner.WINDOW_CHARS
    assert "Priya Raman" not in mask(text).text


def test_questions_without_a_possible_name_skip_the_model_and_the_rest_ask_it(monkeypatch):
    asked: list[str] = []
    real = pii_ner.person_spans

    def spy(texts):
        asked.extend(texts)
        return real(texts)

    monkeypatch.setattr(pii_ner, "person_spans", spy)
    texts = ["How do I top up? What is the fee?", "Thanks, Maria", "hi this is john smith", "Why is my PIN blocked?",
             "Can Łukasz use my card?"]
    out = mask_many(texts)
    assert asked == ["Thanks, Maria", "hi this is john smith", "Can Łukasz use my card?"]
    assert [r.text for r in out][0::3] == [texts[0], texts[3]]


def test_the_name_model_failing_fails_the_whole_batch_closed(monkeypatch):
    def broken(texts):
        raise pii_ner.NerUnavailable("model missing")

    monkeypatch.setattr(pii_ner, "person_spans", broken)
    assert safe_mask_many(["Thanks, Maria", "a@x.com"]) == [None, None]


def test_every_kind_has_a_detector():
    assert set(pii.PII_TYPES) == {kind for kind, *_ in pii._DETECTORS}
