"""`triage init` and `triage import` end to end: a starter workspace from Banking77, history seeded in Postgres."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from apps.cli import main
from ml.data import from_db
from tests.support.banking77 import banking77
from triage import db
from triage.policy import bind, load_policy
from triage.settings import get_settings
from triage.taxonomy import BANK_WORKSPACE, load_taxonomy


@pytest.fixture(scope="module")
def bank400(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 400 rows of Banking77 (text, category), written outside the repository."""
    path = tmp_path_factory.mktemp("b77") / "banking400.csv"
    pd.read_csv(banking77("train"), nrows=400).to_csv(path, index=False)
    return path


@pytest.fixture()
def env_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_init_writes_a_workspace_whose_policy_binds(bank400: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "acme"
    assert main(["init", str(ws), "--from", str(bank400), "--intent-col", "category", "--examples", "3"]) == 0
    source = pd.read_csv(bank400)
    tax = load_taxonomy(ws / "taxonomy.yaml")
    assert list(tax.intents) == sorted(source["category"].unique()) and len(tax.intents) >= 2
    assert tax.name == "acme" and tax.urgencies == [] and all(not s.description for s in tax.intents.values())
    text = (ws / "taxonomy.yaml").read_text()
    assert text.startswith("# Taxonomy written by `triage init`") and "intents.<name>.automate" in text

    policy = bind(load_policy(ws / "policy.yaml"), [("workspace", tax)])
    assert [r.id for r in policy.spec.rules] == ["abstain-to-human", "denied-to-human", "auto-resolve-confident",
                                                 "draft-when-fairly-sure"]
    assert policy.spec.default.id == "fallback-human"
    assert (policy.spec.thresholds.default.auto_resolve, policy.spec.thresholds.default.draft_for_review) == (0.9, 0.6)
    assert "edit the thresholds and rules" in (ws / "policy.yaml").read_text()

    for name in ("_base.yaml", "default.yaml"):
        assert (ws / "prompts" / name).read_text() == (BANK_WORKSPACE / "prompts" / name).read_text()
    examples = pd.read_csv(ws / "examples.csv")
    assert list(examples.columns) == ["text", "intent"]
    assert Counter(examples["intent"]) == dict.fromkeys(tax.intents, 3)
    assert set(examples["text"]) <= set(source["text"])

    out = capsys.readouterr().out
    assert f"export TRIAGE_WORKSPACE={ws}" in out
    assert f"triage train --data {bank400} --intent-col category" in out and "triage models promote" in out


def test_init_orders_urgencies_escalates_the_top_one_and_masks_examples(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    pd.DataFrame({
        "title": ["Lost", "", "Late", "Card"],
        "body": ["card lost, call me on 07700 900123", "still waiting", "where is it", "gone"],
        "cat": ["lost_card", "arrival", "arrival", "lost_card"],
        "prio": ["critical", "low", "high", "high"],
    }).to_csv(path, index=False)
    ws = tmp_path / "ws"
    assert main(["init", str(ws), "--from", str(path), "--intent-col", "cat", "--urgency-col", "prio",
                 "--text-col", "body", "--subject-col", "title", "--name", "shop"]) == 0
    tax = load_taxonomy(ws / "taxonomy.yaml")
    assert tax.name == "shop" and tax.urgencies == ["low", "high", "critical"]
    policy = bind(load_policy(ws / "policy.yaml"), [("workspace", tax)])
    first = policy.spec.rules[0]
    assert (first.id, first.when.urgency, first.route) == ("escalate-critical", ["critical"], "escalate")
    assert policy.spec.rules[3].when.urgency == ["low"]
    examples = pd.read_csv(ws / "examples.csv")
    assert list(examples.columns) == ["text", "intent", "urgency"]
    lost = examples[examples["intent"] == "lost_card"]["text"].tolist()
    assert lost[0].count("\n") == 1 and "call me on <PHONE_1>" in lost[0] and "07700" not in lost[0]


def test_init_refuses_a_non_empty_folder_without_force(bank400: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("keep me")
    argv = ["init", str(ws), "--from", str(bank400), "--intent-col", "category", "--examples", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert str(ws) in err and "--force" in err and not (ws / "taxonomy.yaml").exists()
    assert main([*argv, "--force"]) == 0
    assert (ws / "taxonomy.yaml").is_file() and (ws / "notes.txt").read_text() == "keep me"


def test_init_names_a_label_that_cannot_be_an_intent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.csv"
    pd.DataFrame({"text": ["a", "b"], "intent": ["lost/stolen card", "arrival"]}).to_csv(path, index=False)
    assert main(["init", str(tmp_path / "ws"), "--from", str(path)]) == 1
    err = capsys.readouterr().err
    assert "'lost/stolen card'" in err and "'lost_stolen_card'" in err and not (tmp_path / "ws").exists()


def test_import_drops_unknown_labels_and_writes_the_normalised_csv(bank400: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    assert main(["init", str(ws), "--from", str(bank400), "--intent-col", "category", "--examples", "0"]) == 0
    export = tmp_path / "more.csv"
    frame = pd.read_csv(bank400)
    extra = pd.DataFrame({"text": ["How do I top up?", "Top up failed", "", frame["text"][0]],
                          "category": ["top_up", "top_up", "card_arrival", frame["category"][0]]})
    pd.concat([frame, extra]).to_csv(export, index=False)
    capsys.readouterr()
    out_csv = tmp_path / "labels.csv"
    assert main(["import", str(export), "--intent-col", "category", "--taxonomy", str(ws / "taxonomy.yaml"),
                 "--out", str(out_csv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [f"read 404 rows from {export}, kept 400", "dropped 1: empty text", "dropped 0: missing label",
                       "dropped 2: unknown label", "dropped 1: duplicate"]
    written = pd.read_csv(out_csv)
    assert list(written.columns) == ["text", "intent"] and len(written) == 400
    assert written["intent"].tolist() == frame["category"].tolist()


@pytest.mark.integration
def test_import_seed_labels_is_seen_by_from_db_and_is_idempotent(env_db: str, bank400: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    assert main(["init", str(ws), "--from", str(bank400), "--intent-col", "category", "--examples", "0"]) == 0
    monkeypatch.setenv("TRIAGE_WORKSPACE", str(ws))
    get_settings.cache_clear()
    frame = pd.read_csv(bank400)
    secret = "Please send my new card to jane.doe@example.com, it has not arrived"
    export = tmp_path / "history.csv"
    pd.concat([frame, pd.DataFrame({"text": [secret], "category": ["card_arrival"],
                                    "when": ["2024-03-01T09:00:00Z"]})]).to_csv(export, index=False)
    argv = ["import", str(export), "--intent-col", "category", "--created-at-col", "when", "--seed-labels"]
    capsys.readouterr()
    assert main(argv) == 0
    assert "seeded triage.tickets: 401 new (0 already there); triage.feedback: 401 new" in capsys.readouterr().out

    ds = from_db(env_db, label_cols=["intent"])
    assert len(ds) == 401
    expected = Counter(frame["category"]) + Counter({"card_arrival": 1})
    assert Counter(ds.labels["intent"]) == expected
    assert set(frame["text"].str.strip()) <= set(ds.texts)
    assert secret not in ds.texts and any(t.startswith("Please send my new card to <EMAIL") for t in ds.texts)

    assert main(argv) == 0
    assert "seeded triage.tickets: 0 new (401 already there); triage.feedback: 0 new" in capsys.readouterr().out
    with db.connect(env_db) as conn:
        tickets = conn.execute("SELECT count(*) AS n, count(DISTINCT ticket_id) AS ids, min(received_at) AS first "
                               "FROM triage.tickets WHERE ticket_id LIKE 'import:%%'").fetchone()
        feedback = conn.execute("SELECT count(*) AS n FROM triage.feedback "
                                "WHERE reviewer = 'import' AND kind = 'correct'").fetchone()
        decisions = conn.execute("SELECT count(*) AS n FROM triage.decisions").fetchone()
    assert tickets is not None and feedback is not None and decisions is not None
    assert (tickets["n"], tickets["ids"], feedback["n"], decisions["n"]) == (401, 401, 401, 0)
    assert tickets["first"].isoformat() == "2024-03-01T09:00:00+00:00"
