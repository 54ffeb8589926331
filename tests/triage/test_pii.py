"""PII gate: every type is masked, checksum-invalid look-alikes and decoys are not, masks restore exactly."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.simulator import TicketGenerator, iban_complete, luhn_complete
from tests.support.pii_corpus import build_corpus, score
from triage import pii
from triage.pii import contains_pii, find_pii, iban_ok, luhn_ok, mask, restore, safe_mask

TRIAGE = Path(sys.executable).parent / "triage"

FOUND = [
    ("EMAIL", "john.doe+shop@mail.co.uk"),
    ("EMAIL", "ANNA_SMITH@EXAMPLE.ORG"),
    ("PHONE", "+44 7911 123456"),
    ("PHONE", "+49 151 1234567"),
    ("PHONE", "(555) 234-5678"),
    ("PHONE", "07911 123 456"),
    ("PHONE", "555.234.5678"),
    ("PHONE", "555-234-5678"),
    ("PHONE", "+44 (0)20 7946 0958"),
    ("PHONE", "06 12 34 56 78"),
    ("PHONE", "0151-1234-5678"),
    ("CARD", "4111 1111 1111 1111"),
    ("CARD", "4111-1111-1111-1111"),
    ("CARD", "5555555555554444"),
    ("CARD", "3782 822463 10005"),
    ("CARD", "4111.1111.1111.1111"),
    ("PHONE", "0044 7911 123456"),
    ("PHONE", "(+44) 7911 123456"),
    ("PHONE", "+1 (555) 234-5678"),
    ("IBAN", "DE 89 3704 0044 0532 0130 00"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "GB82WEST12345698765432"),
    ("IBAN", "nl91abna0417164300"),
    ("SSN", "234-56-7890"),
    ("SSN", "234 56 7890"),
    ("NINO", "AB 12 34 56 C"),
    ("NINO", "ab123456c"),
    ("SECRET", "sk-proj-Abc123Def456Ghi789Jkl012Mno345"),
    ("SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("SECRET", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("SECRET", "xoxb-123456789012-abcdefABCDEF123456"),
    ("SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
]

# Checksum- or range-invalid look-alikes and ordinary ticket content: none of these is PII.
NOT_FOUND = [
    "4111 1111 1111 1112",  # Luhn fails
    "4111111111111112",
    "0000 0000 0000 0000",  # Luhn passes, but no card is all zeros
    "DE89 3704 0044 0532 0130 01",  # mod-97 fails
    "GB82WEST12345698765431",
    "XX89370400440532013000",  # no such country
    "000-12-3456",  # SSN area 000
    "666-12-3456",  # SSN area 666
    "912-34-5678",  # SSN area 9xx
    "123-00-4567",  # SSN group 00
    "123-45-0000",  # SSN serial 0000
    "BG123456A",  # NINO prefix never issued
    "QQ 12 34 56 C",  # Q is not a valid first letter
    "AB123456E",  # NINO suffix is A-D
    "2500.00 EUR",
    "€1,234.56",
    "+250.00 EUR",
    "2026-11-24",
    "24.11.2026 10:30",
    "11/24/2026",
    "T-1a2b3c",
    "T-4f3a9b8c7d6e5f4a",
    "order #123456789012",
    "order number 987654321",
    "ORD-2026-004512",
    "123e4567-e89b-12d3-a456-426614174000",
    "v2.13.0",
    "error code 1234",
    "I reset my password yesterday",
    "Password: forgotten",
    "state-of-the-art-customer-service-experience",
]


@pytest.mark.parametrize(("kind", "value"), FOUND)
def test_each_type_is_masked_with_its_typed_placeholder(kind, value):
    text = f"Hello, this is mine: {value}. Thanks!"
    result = mask(text)
    assert result.text == f"Hello, this is mine: <{kind}_1>. Thanks!"
    assert result.counts == {kind: 1}
    assert result.mapping == {f"<{kind}_1>": value}
    assert result.found == [pii.PIIMatch(kind, 21, 21 + len(value), value)]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_invalid_lookalikes_and_decoys_are_left_alone(text):
    sentence = f"See {text} please"
    assert mask(sentence).text == sentence
    assert not contains_pii(sentence)


def test_checksums_are_the_standard_ones():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert luhn_ok(luhn_complete("453201511283036"))
    assert iban_ok(iban_complete("FR", "30006000011234567890189"))
    assert not iban_ok("DE00370400440532013000")


def test_placeholders_are_numbered_per_type_in_order_and_reused_for_equal_values():
    text = "a@x.com then +44 7911 123456, b@y.org, a@x.com again and card 4111 1111 1111 1111"
    result = mask(text)
    assert result.text == ("<EMAIL_1> then <PHONE_1>, <EMAIL_2>, <EMAIL_1> again and card <CARD_1>")
    assert result.counts == {"EMAIL": 3, "PHONE": 1, "CARD": 1}
    assert result.mapping == {
        "<EMAIL_1>": "a@x.com",
        "<PHONE_1>": "+44 7911 123456",
        "<EMAIL_2>": "b@y.org",
        "<CARD_1>": "4111 1111 1111 1111",
    }
    assert [f.type for f in result.found] == ["EMAIL", "PHONE", "EMAIL", "EMAIL", "CARD"]


def test_restore_puts_the_values_back_and_leaves_unknown_placeholders():
    text = "Card 4111 1111 1111 1111, mail a@x.com"
    result = mask(text)
    assert restore(result.text, result.mapping) == text
    draft = "We blocked <CARD_1> and wrote to <EMAIL_1>; <PHONE_9> stays."
    assert restore(draft, result.mapping) == "We blocked 4111 1111 1111 1111 and wrote to a@x.com; <PHONE_9> stays."


def test_a_placeholder_already_in_the_text_is_never_reused():
    text = "literal <EMAIL_1> and a real a@x.com"
    result = mask(text)
    assert result.text == "literal <EMAIL_1> and a real <EMAIL_2>"
    assert restore(result.text, result.mapping) == text


def test_secret_values_after_keys_are_masked_but_not_the_keys():
    text = "api_key=abc123XYZ and password: Summer2024! and Authorization: Bearer abcdefghijklmnop1234"
    result = mask(text)
    assert result.text == "api_key=<SECRET_1> and password: <SECRET_2> and Authorization: Bearer <SECRET_3>"


def test_phone_next_to_other_numbers_keeps_them_out():
    result = mask("card 4111 1111 1111 1111 12/27, call 07911 123456 at 10:30 on 24.11.2026")
    assert result.text == "card <CARD_1> 12/27, call <PHONE_1> at 10:30 on 24.11.2026"


def test_values_directly_after_one_another_are_each_masked():
    text = "4111111111111111 5555555555554444, 07911 123456 07911 654321, 234-56-7890 345-67-8901"
    assert mask(text).text == "<CARD_1> <CARD_2>, <PHONE_1> <PHONE_2>, <SSN_1> <SSN_2>"


def test_nino_without_suffix_only_after_words_that_name_it():
    assert mask("NI number: AB 12 34 56").text == "NI number: <NINO_1>"
    assert mask("ref AB 12 34 56").text == "ref AB 12 34 56"


def test_mask_result_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        mask("x").text = "y"  # type: ignore[misc]


def test_safe_mask_fails_closed_and_does_not_log_the_text(monkeypatch, caplog):
    def boom(text: str, names: list[tuple[int, int]]) -> list[pii.PIIMatch]:
        raise RuntimeError("detector bug")

    monkeypatch.setattr(pii, "_find", boom)
    with caplog.at_level(logging.ERROR, logger="triage.pii"):
        assert safe_mask("secret a@x.com") is None
    assert "masking failed" in caplog.text and "a@x.com" not in caplog.text


def test_safe_mask_returns_the_mask_when_it_works():
    result = safe_mask("a@x.com")
    assert result is not None and result.text == "<EMAIL_1>"


def test_simulator_tickets_leak_no_planted_value():
    gen = TicketGenerator(seed=11, pii_rate=1.0)
    for _ in range(300):
        ticket = gen.generate()
        masked = mask(ticket.text).text.lower()
        for values in ticket.pii.values():
            for value in values:
                assert value.lower() not in masked, ticket.text


def test_small_corpus_no_planted_value_survives_and_every_type_meets_the_bar():
    corpus = build_corpus(300, seed=7)
    result = score(corpus)
    assert result["leaks"] == 0
    assert result["roundtrip_failures"] == 0
    for kind, row in result["types"].items():  # type: ignore[union-attr]
        assert row["planted"] > 20, kind
        assert row["recall"] >= 0.99 and row["precision"] >= 0.95, (kind, row, result["examples"])


PII_PIECES = st.sampled_from([v for _, v in FOUND] + NOT_FOUND + ["<EMAIL_1>", "<CARD_2>", "<SECRET_1>", "<", ">"])
TEXTS = st.lists(st.one_of(st.text(max_size=40), PII_PIECES), max_size=12).map(" ".join)


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), TEXTS, st.from_regex(r"[\d +().\-]{0,40}", fullmatch=True)))
def test_mask_never_raises_and_restore_inverts_it(text):
    result = mask(text)
    assert restore(result.text, result.mapping) == text
    assert sum(result.counts.values()) == len(result.found)
    for f in result.found:
        assert text[f.start : f.end] == f.value
    assert all(f.value not in result.text or f.value in _outside(text, result.found) for f in result.found)


def _outside(text: str, found: list[pii.PIIMatch]) -> str:
    """The text with every found span removed (a value may legitimately occur elsewhere unmasked)."""
    pos, parts = 0, []
    for f in found:
        parts.append(text[pos : f.start])
        parts.append("\0")
        pos = f.end
    return "".join(parts) + text[pos:]


def test_find_pii_spans_do_not_overlap():
    text = "ssn: 814-73-4182 000-47-8802 card 4111 1111 1111 1111 +44 7911 123456 DE89 3704 0044 0532 0130 00"
    found = find_pii(text)
    assert [f.type for f in found] == ["SSN", "CARD", "PHONE", "IBAN"]
    assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))


def _run_cli(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRIAGE), "pii", "mask", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_prints_masked_text_then_a_json_summary_without_values():
    proc = _run_cli("Mail a@x.com or call +44 7911 123456, again a@x.com\n")
    assert proc.returncode == 0, proc.stderr
    text, summary_line = proc.stdout.rstrip("\n").rsplit("\n", 1)
    assert text == "Mail <EMAIL_1> or call <PHONE_1>, again <EMAIL_1>"
    summary = json.loads(summary_line)
    assert summary == {"counts": {"EMAIL": 2, "PHONE": 1}, "placeholders": ["<EMAIL_1>", "<PHONE_1>"]}
    assert "a@x.com" not in proc.stdout and "7911" not in proc.stdout


def test_cli_shows_the_kinds_that_need_the_name_model_and_context():
    proc = _run_cli("Thanks, Maria Gonzalez, 12 Baker Street, London NW1 6XE. DOB 14/03/1987, sort code 20-00-00, "
                    "account 55779911, from 203.0.113.42\n")
    assert proc.returncode == 0, proc.stderr
    text, summary_line = proc.stdout.rstrip("\n").rsplit("\n", 1)
    assert text == ("Thanks, <PERSON_1>, <ADDRESS_1>, London <POSTCODE_1>. DOB <DOB_1>, sort code <BANK_ACCOUNT_1>, "
                    "account <BANK_ACCOUNT_2>, from <IP_1>")
    assert json.loads(summary_line)["counts"] == {"PERSON": 1, "ADDRESS": 1, "POSTCODE": 1, "DOB": 1,
                                                  "BANK_ACCOUNT": 2, "IP": 1}


def test_cli_show_values_includes_the_originals():
    proc = _run_cli("card 4111 1111 1111 1111", "--show-values")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["values"] == {"<CARD_1>": "4111 1111 1111 1111"}


def test_cli_empty_input_names_stdin():
    proc = _run_cli("  \n")
    assert proc.returncode == 1
    assert "stdin" in proc.stderr and proc.stdout == ""
