"""The CLI end to end on a tiny base model, production labels from Postgres, and bootstrap."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.bootstrap import ensure_champion
from apps.cli import main
from apps.simulator import write_csv
from ml import base_data, layout, registry
from ml.data import from_db
from tests.support.tiny_model import build_tiny_base
from triage import db
from triage.settings import Settings, get_settings


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sim.csv"
    write_csv(path, 300, seed=3, ood_rate=0.1)
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, sim_csv: Path) -> Path:
    import pandas as pd

    return build_tiny_base(tmp_path_factory.mktemp("base") / "b", pd.read_csv(sim_csv).text.tolist())


@pytest.fixture()
def env_db(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TRIAGE_MODEL_STORE", str(tmp_path / "store"))
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


@pytest.mark.integration
def test_train_register_evaluate_classify_and_models(env_db: str, sim_csv: Path, tiny_base: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m"
    rc = main(["train", "--data", str(sim_csv), "--ood-label", "out_of_scope", "--base", str(tiny_base), "-o", str(out),
               "--epochs", "1", "--register", "--lr-encoder", "1e-3", "--train-embeddings"])
    assert rc == 0
    trained = capsys.readouterr()
    assert json.loads(trained.out.strip().splitlines()[-1])["output"] == str(out)
    # Not a terminal (as under `triage up`, into a log file): one line per epoch, no progress-bar frames.
    assert "\r" not in trained.err and "epoch 1: loss" in trained.out + trained.err
    assert registry.list_versions(env_db, "triage-classifier")[0].status == "candidate"

    assert main(["evaluate", "--model", str(out), "--data", str(sim_csv), "--ood-label", "out_of_scope"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"accuracy", "macro_f1", "per_class_f1", "ece", "in_scope_accuracy", "ood_recall"} <= set(
        result["heads"]["intent"])
    assert result["throughput_texts_per_s"] > 0

    monkeypatch.setattr("sys.stdin", io.StringIO("my card never came\n\nI want to close my account\n"))
    assert main(["classify", "--model", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and set(lines[0]) == {"text", "intent", "urgency"}
    assert len(lines[0]["intent"]["top_k"]) == 3

    assert main(["models", "promote", "1", "--reason", "first"]) == 0
    assert main(["models", "list"]) == 0
    assert "champion" in capsys.readouterr().out
    assert main(["models", "reject", "1", "--reason", "no"]) == 1
    assert "is the champion" in capsys.readouterr().err


def test_bad_training_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,intent\nhello,card_arrival\nworld,card_arrival\nonce,complaint\n")
    assert main(["train", "--data", str(bad), "-o", str(tmp_path / "m"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"triage: error: {bad} column 'intent': label 'complaint' has 1 row; every label needs at least "
                   "2 rows (add examples or merge the label)"]


@pytest.mark.integration
def test_production_labels_from_db(db_url: str) -> None:
    with db.connect(db_url) as conn:
        for i, (kind, fb_intent, dec_intent) in enumerate([("confirm", None, "card_arrival"),
                                                            ("correct", "pin_blocked", "card_arrival"),
                                                            ("confirm", None, "pin_blocked"),
                                                            ("correct", "card_arrival", "complaint")]):
            conn.execute("INSERT INTO triage.tickets (ticket_id, channel, subject_masked, body_masked, received_at) "
                         "VALUES (%s, 'email', 'Hi', %s, now())", (f"t{i}", f"body {i}"))
            conn.execute("INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, "
                         "model_name, model_version, intent, urgency, prediction, masked_text, received_at) VALUES "
                         "(%s, 'email', 'human_queue', 'r', 'v', 'm', 1, %s, 'low', '{}', 'x', now())",
                         (f"t{i}", dec_intent))
            conn.execute("INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, created_at) "
                         "VALUES (%s, %s, %s, %s, now())", (f"e{i}", f"t{i}", kind, fb_intent))
    ds = from_db(db_url)
    assert ds.texts[0] == "Hi\nbody 0"
    assert ds.labels["intent"] == ["card_arrival", "pin_blocked", "pin_blocked", "card_arrival"]
    assert set(ds.heads) == {"intent"}  # urgency has one label here, so that head is left out


@pytest.mark.integration
@pytest.mark.slow
def test_bootstrap_registers_a_champion_once(db_url: str, tiny_base: Path, tmp_path: Path) -> None:
    settings = Settings(database_url=db_url, model_store=tmp_path / "store")
    said: list[str] = []
    mv = ensure_champion(settings, said.append, rows=300, epochs=1, base=str(tiny_base))
    assert mv.status == "champion" and registry.verified_path(mv).is_dir()
    assert any("no champion" in s for s in said)
    again = ensure_champion(settings, said.append, rows=300, epochs=1, base=str(tiny_base))
    ref = (Path(mv.artifact_path) / "reference.csv").read_text()
    assert "@" not in ref  # e-mail addresses were masked before training, as the stream masks them
    # the first champion keeps every row it was made from, and was not trained on the holdout of them
    made = layout.read_json(Path(mv.artifact_path), layout.TRAINING_ARGS)
    frame, rows = base_data.read(Path(mv.artifact_path) / layout.BASE_DATA, label_cols=made["label_cols"],
                                 ood_label=made["ood_label"])
    assert rows.fingerprint() == made["base_fingerprint"] == mv.data_fingerprint and len(rows) == 300
    assert not frame["text"].str.contains("@").any()
    assert made["holdout_rows"] > 0 and made["train_rows"] + made["val_rows"] + made["holdout_rows"] == 300
    assert again.version == mv.version and len(registry.list_versions(db_url, settings.model_name)) == 1
