"""The taxonomy file: line-precise errors, the bank example, round trips, and what a model stores."""

from __future__ import annotations

import pytest

from ml.data import DataError, Dataset, fit_taxonomy
from triage.taxonomy import BANK_WORKSPACE, TAXONOMY_FILE, Taxonomy, TaxonomyError, bank, parse_taxonomy

TEXT = (BANK_WORKSPACE / TAXONOMY_FILE).read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_bank_is_one_example_workspace() -> None:
    t = bank()
    assert t.heads["intent"][:2] == ["card_arrival", "card_lost_or_stolen"] and len(t.intents) == 18
    assert t.heads["urgency"] == ["low", "normal", "high", "critical"]
    assert t.never_automated == {"card_lost_or_stolen", "dispute_charge", "close_account", "fraud_report", "complaint"}
    assert t.sla("fraud_report", "low") == 15 and t.sla("card_arrival", "high") == 240 and t.sla(None, None) is None
    assert parse_taxonomy(t.to_yaml()) == t  # the file form round-trips
    back = Taxonomy.from_json(t.to_json())
    assert back == t and back.intent_names == t.intent_names  # class-index order survives JSON (and jsonb)


@pytest.mark.parametrize(("old", "new", "needle", "words"), [
    ("  fraud_report:\n", "  fraud/report:\n", "fraud/report", "intent name 'fraud/report'"),
    ("    automate: false\n    sla_minutes: 15", "    automate: false\n    sla_minutes: 0", "sla_minutes: 0",
     "greater than or equal to 1"),
    ("    automate: false\n", "    automate: maybe\n", "automate: maybe", "valid boolean"),
    ("  card_declined:\n", "  card_declined:\n    colour: red\n", "colour", "colour"),
    ("urgencies: [low, normal, high, critical]", "urgencies: [low, low]", "urgencies:", "listed twice"),
    ("  pin_blocked:\n", "  card_arrival:\n", "  card_arrival:", "appears twice"),
])
def test_errors_name_the_file_and_line(old: str, new: str, needle: str, words: str) -> None:
    assert old in TEXT
    bad = TEXT.replace(old, new, 1)
    line = max(i for i, text in enumerate(bad.splitlines(), 1) if needle in text)
    with pytest.raises(TaxonomyError) as info:
        parse_taxonomy(bad, "taxonomy.yaml")
    msg = str(info.value)
    assert msg.startswith(f"taxonomy.yaml: line {line}:"), msg
    assert words in msg, msg


def test_syntax_errors_and_wrong_shapes_are_one_line() -> None:
    with pytest.raises(TaxonomyError, match=r"^t.yaml: line \d+: YAML syntax error"):
        parse_taxonomy(TEXT.replace("intents:\n", "intents: [\n", 1), "t.yaml")
    with pytest.raises(TaxonomyError, match="line 1: the taxonomy must be a YAML mapping"):
        parse_taxonomy("- a\n- b\n", "t.yaml")
    with pytest.raises(TaxonomyError, match="out-of-scope label, not an intent"):
        parse_taxonomy("name: x\nintents: [a, out_of_scope]\n", "t.yaml")
    # The shortest useful file: a name and a list of intents.
    t = parse_taxonomy("name: shop\nintents: [where_is_my_order, return_item]\n")
    assert t.heads == {"intent": ["where_is_my_order", "return_item"], "urgency": ["low", "normal", "high", "critical"]}


def _ds(intents: list[str], urgencies: list[str] | None = None) -> Dataset:
    labels: dict[str, list[str | None]] = {"intent": list(intents)}
    heads = {"intent": sorted(set(intents))}
    if urgencies is not None:
        labels["urgency"] = list(urgencies)
        heads["urgency"] = sorted(set(urgencies))
    return Dataset(texts=[f"t{i}" for i in range(len(intents))], labels=labels, heads=heads, ood=[False] * len(intents))


def test_a_model_stores_the_workspace_taxonomy_when_its_labels_fit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ds = _ds(["pin_blocked", "card_arrival"] * 2, ["low", "high"] * 2)
    tax, out, source = fit_taxonomy(ds, explicit=None, workspace=BANK_WORKSPACE / TAXONOMY_FILE)
    assert tax == bank() and out.heads == bank().heads and source.endswith("taxonomy.yaml")
    # Labels the workspace does not know: a taxonomy derived from the data, urgencies in their usual order.
    ds = _ds(["refund_not_showing_up", "age_limit"] * 2, ["high", "low"] * 2)
    tax, out, source = fit_taxonomy(ds, explicit=None, workspace=BANK_WORKSPACE / TAXONOMY_FILE, name="b77")
    assert tax.name == "b77" and tax.intent_names == ("age_limit", "refund_not_showing_up")
    assert tax.urgencies == ["low", "high"] and source == "derived from the data's labels"
    # No urgency column: the model has no urgency head, nor does the taxonomy it stores.
    tax, out, _ = fit_taxonomy(_ds(["pin_blocked", "card_arrival"]), explicit=None,
                               workspace=BANK_WORKSPACE / TAXONOMY_FILE)
    assert "urgency" not in tax.heads and tax.intents == bank().intents and "urgency" not in out.heads


def test_an_explicit_taxonomy_refuses_labels_it_does_not_know() -> None:
    with pytest.raises(DataError, match=r"intent label 'age_limit' of the data is not in the taxonomy .*add it"):
        fit_taxonomy(_ds(["age_limit", "card_arrival"]), explicit=BANK_WORKSPACE / TAXONOMY_FILE, workspace=None)


def test_data_with_another_head_gets_its_own_taxonomy_not_the_workspace_one() -> None:
    """Banking77's one column is `category`: its 77 labels are the model's intents, not the bank's 18."""
    ds = Dataset(texts=["a", "b", "c"], labels={"category": ["age_limit", "card_arrival", "age_limit"]},
                 heads={"category": ["age_limit", "card_arrival"]}, ood=[False] * 3)
    tax, out, source = fit_taxonomy(ds, explicit=None, workspace=BANK_WORKSPACE / TAXONOMY_FILE, name="b77")
    assert (tax.name, tax.intent_names) == ("b77", ("age_limit", "card_arrival"))
    assert source == "derived from the data's labels"
    assert out.heads == ds.heads


def test_data_naming_the_out_of_scope_label_as_an_intent_says_which_flag_to_pass() -> None:
    ds = _ds(["out_of_scope", "refund_not_showing_up", "age_limit"])
    with pytest.raises(DataError, match=r"'out_of_scope' .* is the out-of-scope label.*--ood-label out_of_scope"):
        fit_taxonomy(ds, explicit=None, workspace=None)
    tax, _, _ = fit_taxonomy(_ds(["refund_not_showing_up", "age_limit"]), explicit=None, workspace=None,
                             ood_label="none_of_these")
    assert tax.out_of_scope == "none_of_these"


def test_labels_as_teams_spell_them_are_valid() -> None:
    """Banking77 names one intent 'reverted_card_payment?'; help-desk exports use spaces ('Card arrival')."""
    t = parse_taxonomy("name: b77\nintents:\n  reverted_card_payment?:\n  Card arrival:\n", "t.yaml")
    assert t.intent_names == ("reverted_card_payment?", "Card arrival")
    assert parse_taxonomy(t.to_yaml(), "again.yaml") == t
    for bad in ("a/b", " lead", "tab\there", "x" * 81):
        with pytest.raises(TaxonomyError, match="no '/'"):
            parse_taxonomy(f"name: b\nintents: [ok, {bad!r}]\n", "bad.yaml")
