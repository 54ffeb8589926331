"""Training-data validation: bad input stops with one line naming the row or column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ml.data import DataError, from_frame, load_file, split
from triage.taxonomy import bank

INTENTS, URGENCIES = bank().intent_names, tuple(bank().urgencies)


def frame(n: int = 40) -> pd.DataFrame:
    intents = ["card_arrival", "pin_blocked", "out_of_scope", "complaint"]
    return pd.DataFrame({
        "text": [f"text number {i}" for i in range(n)],
        "intent": [intents[i % 4] for i in range(n)],
        "urgency": [URGENCIES[i % 2] for i in range(n)],
    })


def test_known_heads_use_the_taxonomy_order_and_ood_is_not_a_class() -> None:
    ds = from_frame(frame(), ood_label="out_of_scope", known_heads=bank().heads)
    assert ds.heads == {"intent": list(INTENTS), "urgency": list(URGENCIES)}
    # Without a taxonomy, a head's labels are the observed ones, sorted.
    assert from_frame(frame(), ood_label="out_of_scope").heads == {
        "intent": ["card_arrival", "complaint", "pin_blocked"], "urgency": ["low", "normal"]}
    assert sum(ds.ood) == 10 and all(v is None for v, o in zip(ds.labels["intent"], ds.ood, strict=True) if o)
    assert ds.label_ids("intent")[2] == -100


def test_split_is_stratified_and_deterministic() -> None:
    ds = from_frame(frame(80), ood_label="out_of_scope")
    tr, va = split(ds, 0.25, seed=0)
    assert len(tr) + len(va) == 80 and sum(va.ood) == 5
    assert split(ds, 0.25, seed=0)[1].texts == va.texts


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.drop(columns=["text"]), "no text column 'text'"),
    (lambda d: d.assign(text=["ok"] * 5 + [""] + ["ok"] * 34), "row 7: empty text"),
    (lambda d: d.assign(intent=["rare"] + list(d.intent[1:])), "label 'rare' has 1 row"),
    (lambda d: d.drop(columns=["intent", "urgency"]), "none of the label columns"),
])
def test_bad_input_names_the_problem(mutate, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.csv"
    mutate(frame()).to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        load_file(path)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_file(tmp_path / "nope.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read"):
        load_file(bad)


def test_a_data_set_may_carry_only_some_label_columns() -> None:
    ds = from_frame(frame().drop(columns=["urgency"]))
    assert list(ds.heads) == ["intent"]
