"""Reading a team's labelled export: formats, column mapping, joined text, drop counts, mapping errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ml.imports import (
    DUPLICATE,
    EMPTY_TEXT,
    MISSING_LABEL,
    UNKNOWN_LABEL,
    ColumnMap,
    ImportDataError,
    read_export,
)
from ml.train import TrainingArgs, load_dataset
from triage.errors import TriageError
from triage.taxonomy import IntentSpec, Taxonomy

ROWS = [
    {"title": "Card", "body": "My card has not arrived", "cat": "card_arrival", "prio": "low"},
    {"title": "", "body": "Where is my new card?", "cat": "card_arrival", "prio": "normal"},
    {"title": "Rate", "body": "What rate do you use for euros?", "cat": "exchange_rate", "prio": "low"},
    {"title": None, "body": "  ", "cat": "exchange_rate", "prio": "low"},             # empty text
    {"title": "Card", "body": "my card  has NOT arrived", "cat": "card_arrival", "prio": "low"},  # duplicate
    {"title": "Card", "body": "my card has not arrived", "cat": "card_arrival", "prio": "high"},  # other label: kept
    {"title": "Hi", "body": "I want a loan", "cat": "loan", "prio": "low"},            # unknown with a taxonomy
    {"title": "Hi", "body": "No label here", "cat": None, "prio": None},               # missing label
]
MAP = ColumnMap(text=["body"], subject="title", intent="cat", urgency="prio")


def _taxonomy() -> Taxonomy:
    return Taxonomy(name="t", intents={"card_arrival": IntentSpec(), "exchange_rate": IntentSpec()})


def _write(tmp_path: Path, fmt: str) -> Path:
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"export.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_maps_columns_and_joins_subject_first(tmp_path: Path, fmt: str) -> None:
    rows, report = read_export(_write(tmp_path, fmt), MAP)
    assert list(rows.columns) == ["text", "intent", "urgency"]
    assert rows["text"].tolist()[:3] == ["Card\nMy card has not arrived", "Where is my new card?",
                                         "Rate\nWhat rate do you use for euros?"]
    assert rows["intent"].tolist()[0] == "card_arrival" and rows["urgency"].tolist()[1] == "normal"
    assert (report.rows_read, report.rows_kept) == (8, 5)
    assert report.dropped == {EMPTY_TEXT: 1, MISSING_LABEL: 1, UNKNOWN_LABEL: 0, DUPLICATE: 1}


def test_several_text_columns_are_joined_in_order_skipping_empty_parts(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    pd.DataFrame({"a": ["one", "", "x"], "b": ["two", "only b", "x"], "intent": ["p", "q", "p"]}).to_csv(
        path, index=False)
    rows, _ = read_export(path, ColumnMap(text=["a", "b"]))
    assert rows["text"].tolist() == ["one\ntwo", "only b", "x\nx"]
    assert list(rows.columns) == ["text", "intent"]


def test_taxonomy_drops_unknown_labels_and_limit_cuts_before_cleaning(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    _, report = read_export(path, MAP, taxonomy=_taxonomy())
    assert report.dropped[UNKNOWN_LABEL] == 1 and report.rows_kept == 4
    rows, report = read_export(path, MAP, taxonomy=_taxonomy(), limit=4)
    assert (report.rows_read, report.rows_kept, report.limit) == (4, 3, 4)
    assert report.dropped == {EMPTY_TEXT: 1, MISSING_LABEL: 0, UNKNOWN_LABEL: 0, DUPLICATE: 0}
    assert report.lines()[0] == f"read 4 rows from {path} (the first 4: --limit), kept 3"
    assert report.lines()[1:] == ["dropped 1: empty text", "dropped 0: missing label", "dropped 0: unknown label",
                                  "dropped 0: duplicate"]


def test_unknown_urgency_drops_the_row_too(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    pd.DataFrame({"text": ["a", "b"], "intent": ["card_arrival", "card_arrival"], "urgency": ["low", "urgent"]}
                 ).to_csv(path, index=False)
    rows, report = read_export(path, ColumnMap(urgency="urgency"), taxonomy=_taxonomy())
    assert rows["urgency"].tolist() == ["low"] and report.dropped[UNKNOWN_LABEL] == 1


def test_a_row_with_only_an_urgency_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    pd.DataFrame({"text": ["a", "b"], "intent": ["x", None], "urgency": [None, "high"]}).to_csv(path, index=False)
    rows, report = read_export(path, ColumnMap(urgency="urgency"))
    assert report.rows_kept == 2 and rows["intent"].isna().tolist() == [False, True]


def test_missing_mapped_column_names_it_and_the_file_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv")
    with pytest.raises(ImportDataError) as info:
        read_export(path, ColumnMap(text=["body"], intent="category"))
    message = str(info.value)
    assert "no column 'category' (--intent-col category)" in message
    assert "title, body, cat, prio" in message and str(path) in message
    assert isinstance(info.value, TriageError)


def test_unknown_suffix_and_missing_file_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ImportDataError, match=r"suffix '\.xlsx'.*\.csv, \.tsv, \.jsonl"):
        read_export(tmp_path / "e.xlsx", MAP)
    with pytest.raises(ImportDataError, match="does not exist"):
        read_export(tmp_path / "nope.csv", MAP)


def test_created_at_is_parsed_to_utc_and_a_bad_value_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "intent": ["x", "y", "x"],
                  "when": ["2024-01-02T10:00:00+02:00", "2024-01-03", ""]}).to_csv(path, index=False)
    rows, _ = read_export(path, ColumnMap(created_at="when"))
    stamps = rows["created_at"].tolist()
    assert stamps[:2] == [pd.Timestamp("2024-01-02T08:00:00Z"), pd.Timestamp("2024-01-03T00:00:00Z")]
    assert pd.isna(stamps[2])
    pd.DataFrame({"text": ["a", "b"], "intent": ["x", "y"], "when": ["2024-01-02", "soon"]}).to_csv(path, index=False)
    with pytest.raises(ImportDataError, match=r"row 2: 'when' value 'soon' is not a date"):
        read_export(path, ColumnMap(created_at="when"))


def test_train_maps_the_intent_column_and_limits_rows(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    rows = [{"body": f"text {i}", "category": "a" if i % 2 else "b", "urgency": "low" if i < 4 else "high"}
            for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    said: list[str] = []
    ds = load_dataset(TrainingArgs(output_dir=str(tmp_path / "m"), data=str(path), text_col="body",
                                   intent_col="category", limit=8), said.append)
    assert len(ds) == 8 and ds.heads == {"intent": ["a", "b"], "urgency": ["high", "low"]}
    assert ds.texts[0] == "text 0" and said[0] == f"read 8 rows from {path} (the first 8: --limit), kept 8"


def test_train_reads_jsonl_without_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "topic": "a" if i % 2 else "b"}) + "\n" for i in range(6)))
    ds = load_dataset(TrainingArgs(output_dir=str(tmp_path / "m"), data=str(path), label_cols=["topic"]))
    assert len(ds) == 6 and ds.heads == {"topic": ["a", "b"]}
