"""Traffic for a team's own taxonomy, paraphrased from example texts it was not written against (Banking77)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from apps.sim_examples import ExampleGenerator, ExamplesError, generator_for, read_examples
from apps.simulator import TicketGenerator, write_csv
from tests.support.banking77 import banking77
from triage.pii import find_pii_many
from triage.taxonomy import BANK_WORKSPACE, Taxonomy

INTENTS = ("card_arrival", "exchange_rate", "pin_blocked", "atm_support")


def _workspace(tmp_path: Path, per_intent: int = 8) -> tuple[Path, dict[str, set[str]]]:
    """A workspace with Banking77's labels and its first texts per intent as examples.csv."""
    ws = tmp_path / "ws"
    ws.mkdir()
    taxonomy = Taxonomy(name="b77", intents={i: {} for i in INTENTS}, urgencies=[])
    (ws / "taxonomy.yaml").write_text(taxonomy.to_yaml(), encoding="utf-8")
    texts: dict[str, set[str]] = {}
    with banking77("train").open(newline="", encoding="utf-8") as fh, \
            (ws / "examples.csv").open("w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        w.writerow(["text", "intent"])
        for row in csv.DictReader(fh):
            cat = row["category"]
            if cat in INTENTS and len(texts.setdefault(cat, set())) < per_intent:
                texts[cat].add(row["text"])
                w.writerow([row["text"], cat])
        w.writerow(["My new address is on file, email me at <EMAIL_1> when the card ships", "card_arrival"])
    return ws, texts


def test_a_workspace_with_examples_gets_paraphrases_labelled_with_its_own_intents(tmp_path: Path) -> None:
    ws, texts = _workspace(tmp_path)
    gen = generator_for(ws, seed=4, ood_rate=0.1)
    assert isinstance(gen, ExampleGenerator)
    tickets = list(gen.stream(400))
    assert {t.intent for t in tickets} == {*INTENTS, "out_of_scope"}
    assert all(t.urgency is None for t in tickets)  # the taxonomy has no urgencies
    sources = set().union(*texts.values())
    bodies = [t.message["body"] for t in tickets if t.message["channel"] != "email"]
    changed = sum(b not in sources for b in bodies)
    assert changed / len(bodies) > 0.5, "most chat tickets should be reworded, not copied"
    # The masked example's placeholder comes back as a fresh address that the PII gate finds.
    refilled = [t for t in tickets if "EMAIL" in t.pii]
    assert refilled and all("<EMAIL_1>" not in t.message["body"] for t in refilled)
    found = find_pii_many([t.message["body"] for t in refilled], names=False)
    assert all(any(m.type == "EMAIL" for m in matches) for matches in found)


def test_the_same_seed_gives_the_same_traffic_and_training_csv(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path)
    a = [t.message["body"] for t in generator_for(ws, seed=1).stream(30)]
    b = [t.message["body"] for t in generator_for(ws, seed=1).stream(30)]
    assert a == b
    out = tmp_path / "train.csv"
    write_csv(out, 50, seed=1, generator=generator_for(ws, seed=1))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 50 and {r["intent"] for r in rows} <= set(INTENTS) and {r["urgency"] for r in rows} == {""}


def test_the_bank_workspace_keeps_the_banks_own_generator() -> None:
    assert type(generator_for(BANK_WORKSPACE, seed=0)) is TicketGenerator


def test_examples_naming_an_unknown_intent_are_refused_with_the_line(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path)
    with (ws / "examples.csv").open("a", encoding="utf-8") as f:
        f.write("I want to buy a boat,boat_sales\n")
    with pytest.raises(ExamplesError) as err:
        generator_for(ws)
    line = 1 + 8 * len(INTENTS) + 2  # the header, the Banking77 rows, the masked example, then this row
    assert f"{ws / 'examples.csv'}: line {line}: intent 'boat_sales' is not in the taxonomy 'b77'" in str(err.value)


def test_a_workspace_without_examples_says_what_to_add(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path)
    (ws / "examples.csv").write_text("text,intent\n", encoding="utf-8")
    with pytest.raises(ExamplesError, match="no example texts for any intent; add rows"):
        generator_for(ws)
    (ws / "examples.csv").unlink()
    with pytest.raises(ExamplesError, match="cannot read the examples"):
        read_examples(ws / "examples.csv", Taxonomy(name="x", intents={"a": {}, "b": {}}))
