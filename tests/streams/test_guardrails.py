"""Output guardrails and the versioned prompts they guard."""

from __future__ import annotations

import pytest

from streams.guardrails import check_draft
from streams.prompts import PromptError, load_prompt, template_reply
from triage.settings import load_settings
from triage.taxonomy import bank

INTENTS = bank().intent_names

TICKET = (
    "Hi, my refund of 49.99 GBP from Acme never arrived. Reach me at <EMAIL_1> or on +44 7700 900123. "
    "See https://acme.example.com/orders/77 for the order."
)
ALLOW = load_settings({}).allow_list
OK = "Thank you for your message. We have checked your refund and our team will contact you shortly."


def check(draft: str, **kw: object):  # type: ignore[no-untyped-def]
    return check_draft(draft, ticket=TICKET, allow=ALLOW, **kw)  # type: ignore[arg-type]


def test_a_plain_reply_passes() -> None:
    v = check(OK)
    assert v.ok and v.reasons == ()


@pytest.mark.parametrize(
    ("draft", "reason"),
    [
        (OK + " Call us on +44 20 7123 4567.", "phone"),
        (OK + " Call us on 0800 123 4567.", "phone"),
        (OK + " Or visit https://evil.example.net/reset now.", "URL"),
        (OK + " Or visit www.other-bank.com.", "URL"),
        (OK + " Write to refunds@acme-payments.com.", "e-mail"),
        (OK + " We will refund £120.00 today.", "amount"),
        (OK + " A fee of 15.50 applies.", "amount"),
        (OK + " Your refund of 49.90 GBP is on its way.", "amount"),
        ("Dear [Customer Name], " + OK, "unfilled template slot"),
        ("Dear {first_name}, " + OK, "unfilled template slot"),
        (OK + " Kind regards, <agent name>", "unfilled template slot"),
        (OK + " We wrote to <EMAIL_2>.", "masked value not in the ticket"),
        (OK + " Your card 4111 1111 1111 1111 is blocked.", "card"),
        ("Thanks!", "too short"),
        (OK * 20, "too long"),
    ],
)
def test_invented_details_fail(draft: str, reason: str) -> None:
    v = check(draft)
    assert not v.ok
    assert reason in v.reason, v.reasons


@pytest.mark.parametrize(
    "draft",
    [
        OK + " Your refund of 49.99 GBP should arrive soon.",
        OK + " We will call you back on +44 7700 900123.",
        OK + " We will write to you at <EMAIL_1>.",
        OK + " The order page https://acme.example.com/orders/77 shows it as returned.",
        OK + " You can also see https://help.example-bank.com or write to support@example-bank.com.",
        OK + " Our line +44 20 7946 0000 is open every day.",
    ],
)
def test_values_from_the_ticket_or_allow_list_pass(draft: str) -> None:
    v = check(draft)
    assert v.ok, v.reasons


def test_facts_allow_their_numbers_and_reasons_never_leak_values() -> None:
    v = check_draft(OK + " A fee of 2.50 EUR applies.", ticket="no numbers here", facts=["The fee is 2.50 EUR."])
    assert v.ok, v.reasons
    v = check(OK + " Call +1 212 555 0199 or mail x.y@fake.org")
    assert not v.ok and "555" not in v.reason and "fake.org" not in v.reason


def test_every_intent_has_a_versioned_prompt_whose_template_passes_the_guardrails() -> None:
    settings = load_settings({})
    for intent in INTENTS:
        prompt, reply = template_reply(intent)
        assert prompt.id == f"draft.{intent}" and prompt.version.endswith("+base.2")
        v = check_draft(
            reply,
            ticket="",
            facts=prompt.facts,
            allow=settings.allow_list,
            min_chars=settings.draft_min_chars,
            max_chars=settings.draft_max_chars,
        )
        assert v.ok, (intent, v.reasons)
    prompt, _ = template_reply("out_of_scope")
    assert prompt.id == "draft.default"


def test_prompt_messages_are_structured_and_fully_filled() -> None:
    prompt = load_prompt("card_arrival")
    msgs = prompt.messages(ticket="Where is my card? <EMAIL_1>", intent="card_arrival", urgency="normal")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "Intent: card_arrival" in user and "Urgency: normal" in user and "<EMAIL_1>" in user
    assert "5 working days" in user
    assert "{" not in user


def test_broken_prompt_file_is_refused_with_the_file_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "_base.yaml").write_text("id: b\nversion: '1'\nsystem: s\nuser: u\n")
    (tmp_path / "card_arrival.yaml").write_text("id: x\n")
    with pytest.raises(PromptError, match=r"card_arrival.yaml lacks version, template_reply"):
        load_prompt("card_arrival", tmp_path)
