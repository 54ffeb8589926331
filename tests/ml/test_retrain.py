"""Retraining: which labels are used and how, the base data it starts from, the registration rule, and one real
fine-tune with a tiny model."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from lifecycle import retrain
from lifecycle.retrain import RetrainConfig, RetrainError, SkipRetrain
from ml import base_data, layout, registry
from tests.support.lifecycle import beatable_champion, seed_decisions, settings_for

# ---- pure pieces ------------------------------------------------------------------------------------------------


def _labels(n: int) -> pd.DataFrame:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    return pd.DataFrame({
        "ticket_id": [f"T{i}" for i in range(n)],
        "created_at": [t0 + timedelta(minutes=(i * 7) % n) for i in range(n)],
        "text": [f"text {i}" for i in range(n)],
        "intent": ["refund_request"] * n,
        "urgency": ["normal"] * n,
        "predicted_intent": ["refund_request" if i % 2 else "complaint" for i in range(n)],
        "predicted_urgency": ["normal"] * n,
    }).sort_values("created_at").reset_index(drop=True)


def test_recent_slice_is_the_newest_labels() -> None:
    frame = _labels(10)
    older, recent = retrain.split_recent(frame, 0.2)
    assert len(older) == 8 and len(recent) == 2
    assert older["created_at"].max() < recent["created_at"].min()
    assert len(retrain.split_recent(frame.head(3), 0.1)[1]) == 1  # never empty


def test_corrections_are_repeated_by_their_weight() -> None:
    frame = _labels(10)  # even rows are corrections (predicted complaint, labelled refund_request)
    assert retrain.is_correction(frame).sum() == 5
    weighted = retrain.weight_corrections(frame, 3.0, seed=0)
    counts = weighted["ticket_id"].value_counts()
    corrected = set(frame.loc[retrain.is_correction(frame), "ticket_id"])
    assert all(counts[t] == 3 for t in corrected) and all(counts[t] == 1 for t in set(counts.index) - corrected)
    assert len(retrain.weight_corrections(frame, 1.0, seed=0)) == 10
    half = retrain.weight_corrections(_labels(400), 1.5, seed=0)
    assert 400 + 60 < len(half) < 400 + 140  # about half the 200 corrections get a second copy


def test_base_data_is_the_champions_full_set_checked_by_fingerprint(tiny_model: Path, tmp_path: Path) -> None:
    champ = tmp_path / "champion"
    shutil.copytree(tiny_model, champ)
    made = json.loads((champ / layout.TRAINING_ARGS).read_text())
    frame, info = retrain.base_data(RetrainConfig(), champ)
    assert len(frame) == info["rows"] == made["base_rows"] == 600 and list(frame.columns) == ["text", "intent",
                                                                                              "urgency"]
    assert info["fingerprint"] == made["base_fingerprint"] and info["holdout_rows"] == made["holdout_rows"]
    assert info["source"] == str(champ / layout.BASE_DATA)

    copy = tmp_path / "copy.csv"  # the same rows in another file format: the fingerprint is of the rows
    frame.to_csv(copy, index=False)
    assert retrain.base_data(RetrainConfig(base_data=copy), champ)[1]["fingerprint"] == made["base_fingerprint"]
    other = tmp_path / "other.csv"
    frame.assign(urgency=frame["urgency"].iloc[::-1].to_numpy()).to_csv(other, index=False)
    with pytest.raises(RetrainError, match=r"other.csv has fingerprint \w{16}, the champion was trained on \w{16}: "
                                           "set TRIAGE_RETRAIN_BASE_DATA to a copy of the champion's base data"):
        retrain.base_data(RetrainConfig(base_data=other), champ)
    with pytest.raises(RetrainError, match="nope.csv is missing"):
        retrain.base_data(RetrainConfig(base_data=tmp_path / "nope.csv"), champ)
    (champ / layout.BASE_DATA).unlink()
    with pytest.raises(RetrainError, match=r"base_data.csv.gz is missing \(fingerprint \w{16}\): re-register"):
        retrain.base_data(RetrainConfig(), champ)
    (champ / layout.TRAINING_ARGS).write_text(json.dumps({**made, "base_fingerprint": ""}))
    with pytest.raises(RetrainError, match="records no base data"):
        retrain.base_data(RetrainConfig(base_data=copy), champ)


def _eval(macro: float, per_class: dict[str, float], support: int = 20) -> dict:
    return {"intent": {"macro_f1": macro, "per_class_f1": per_class, "support": {c: support for c in per_class},
                       "rows": support * len(per_class), "accuracy": macro}}


def test_compare_registers_only_a_clear_improvement() -> None:
    cfg = RetrainConfig(margin=0.02, max_class_regression=0.05)
    champ = {"fixed_holdout": _eval(0.80, {"a": 0.8, "b": 0.8}), "recent": _eval(0.70, {"a": 0.7, "b": 0.7})}
    better = {"fixed_holdout": _eval(0.81, {"a": 0.8, "b": 0.82}), "recent": _eval(0.75, {"a": 0.75, "b": 0.75})}
    ok = retrain.compare(better, champ, cfg)
    assert ok["better"] and ok["scores"]["recent"]["gain"] == 0.05 and "recent slice +0.0500" in ok["summary"]

    small = {"fixed_holdout": _eval(0.80, {"a": 0.8, "b": 0.8}), "recent": _eval(0.71, {"a": 0.71, "b": 0.71})}
    assert retrain.compare(small, champ, cfg)["reasons"] == [
        "macro-F1 gain on the recent slice +0.0100 is below the margin 0.0200"]

    forgets = {"fixed_holdout": _eval(0.75, {"a": 0.75, "b": 0.75}), "recent": _eval(0.75, {"a": 0.75, "b": 0.75})}
    assert "fixed holdout drops by 0.0500" in retrain.compare(forgets, champ, cfg)["summary"]

    one_class = {"fixed_holdout": _eval(0.80, {"a": 0.9, "b": 0.7}), "recent": _eval(0.75, {"a": 0.9, "b": 0.6})}
    verdict = retrain.compare(one_class, champ, cfg)
    assert not verdict["better"] and len(verdict["class_regressions"]) == 2
    assert "worst intent=b" in verdict["summary"]
    assert verdict["per_class"]["recent"]["intent"] == {  # the before / after table of the retrain record
        "a": {"support": 20, "champion_f1": 0.7, "candidate_f1": 0.9, "change": 0.2},
        "b": {"support": 20, "champion_f1": 0.7, "candidate_f1": 0.6, "change": -0.1}}


def test_rare_classes_do_not_block() -> None:
    cfg = RetrainConfig(margin=0.01, max_class_regression=0.05)
    champ = {"fixed_holdout": _eval(0.8, {"a": 0.8}, support=5), "recent": _eval(0.7, {"a": 0.7}, support=5)}
    cand = {"fixed_holdout": _eval(0.8, {"a": 0.6}, support=5), "recent": _eval(0.8, {"a": 0.6}, support=5)}
    assert retrain.compare(cand, champ, cfg)["class_regressions"] == []


# ---- against the database, with a tiny model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def weak_champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return beatable_champion(tmp_path_factory)


def _champion(url: str, model_dir: Path, settings) -> registry.ModelVersion:
    return registry.register(url, model_dir, name=settings.model_name, status="champion", changed_by="test",
                             reason="seed", models_dir=settings.models_dir)


@pytest.mark.integration
def test_too_few_new_labels_skip_with_the_counts(db_url: str, tmp_path: Path, weak_champion: Path) -> None:
    settings = settings_for(db_url, tmp_path)
    cfg = RetrainConfig(min_new_labels=50)
    with pytest.raises(SkipRetrain, match="no champion"):
        retrain.build_training_set(settings, cfg, until=datetime.now(UTC), work_dir=tmp_path / "w")
    champ = _champion(db_url, weak_champion, settings)
    # labels given before the champion was registered are not new
    seed_decisions(db_url, champ.created_at - timedelta(days=2), champ.created_at - timedelta(days=1), 80, seed=1)
    seed_decisions(db_url, champ.created_at + timedelta(hours=1), champ.created_at + timedelta(hours=2), 30, seed=2,
                   prefix="N")
    until = champ.created_at + timedelta(days=1)
    with pytest.raises(SkipRetrain, match=r"too few new labels: 30 since .* \(champion v1\), 50 needed"):
        retrain.build_training_set(settings, cfg, until=until, work_dir=tmp_path / "w")


@pytest.mark.integration
@pytest.mark.slow
def test_retrain_builds_a_weighted_set_and_registers_a_better_candidate(db_url: str, tmp_path: Path,
                                                                        weak_champion: Path) -> None:
    settings = settings_for(db_url, tmp_path)
    champ = _champion(db_url, weak_champion, settings)
    start = champ.created_at + timedelta(minutes=1)
    seed_decisions(db_url, start, start + timedelta(hours=10), 300, seed=5, accuracy=0.5)
    until = start + timedelta(hours=6)  # the run's bound: later labels are not used
    # one training thread: the same floats every run, so the int8 parity check on this tiny validation set
    # (about 160 rows, one row = 0.6 points) cannot flip between runs; three epochs, as the warm start begins
    # from the rotated heads (every class named wrongly)
    cfg = RetrainConfig(min_new_labels=100, epochs=3, correction_weight=3.0, threads=1)
    ts = retrain.build_training_set(settings, cfg, until=until, work_dir=tmp_path / "work")
    c = ts.counts
    assert c["new_labels"] == 179 and c["recent_slice"] == 36 and c["new_train"] == 143
    assert c["weighted_new_rows"] == c["confirmations"] + 3 * c["corrections"]
    assert c["corrections"] + c["confirmations"] + c["new_in_holdout"] == c["new_train"]
    assert c["train_rows"] == c["base_train"] + c["weighted_new_rows"]
    assert c["base_rows"] == c["base_train"] + c["fixed_holdout"] == 600  # every row the champion was made from
    audit = pd.read_csv(ts.path(retrain.LABELS_FILE), parse_dates=["created_at"])
    held, used = audit[audit["split"] == "recent"], audit[audit["split"] == "train"]
    assert len(held) == 36 and not set(held["ticket_id"]) & set(used["ticket_id"])
    assert held["created_at"].min() >= used["created_at"].max()  # the newest labels are held out
    assert int(used["correction"].sum()) == c["corrections"]
    assert (audit["split"] == "holdout").sum() == c["new_in_holdout"]
    trained_on = pd.read_csv(ts.path(retrain.TRAIN_FILE))
    assert len(trained_on) == c["train_rows"]
    fixed = pd.read_csv(ts.path(retrain.FIXED_FILE))
    assert len(fixed) == c["fixed_holdout"] == ts.base_data["holdout_rows"] and not set(fixed["text"]) & set(
        trained_on["text"])
    assert len(pd.read_csv(ts.path(retrain.CANDIDATE_BASE_FILE))) == c["candidate_base_rows"] == 600 + 143
    assert retrain.load_training_set(Path(ts.work_dir)) == ts

    candidate = retrain.fine_tune(settings, cfg, ts, say=lambda _m: None)
    assert (candidate / "model.int8.onnx").is_file()
    result = retrain.evaluate_pair(settings, cfg, ts, candidate, say=lambda _m: None)
    assert result["better"], result["summary"]
    assert result["scores"]["recent"]["candidate"] > result["scores"]["recent"]["champion"] + cfg.margin
    assert result["candidate_eval"]["recent"]["intent"]["rows"] <= 36

    mv = retrain.register_candidate(settings, ts, candidate, result, changed_by="test")
    assert (mv.version, mv.status) == (2, "candidate")
    assert mv.metrics["retrain"]["labels_until"] == until.isoformat()
    assert mv.metrics["retrain"]["scores"] == result["scores"]
    assert mv.metrics["retrain"]["base_data"]["fingerprint"] == champ.data_fingerprint
    # the candidate is a champion the next retrain can start from: its base data is the old plus the new labels
    nxt = retrain.base_data(RetrainConfig(), registry.verified_path(mv))[1]
    assert nxt["rows"] == 600 + 143 and nxt["holdout_rows"] == ts.base_data["holdout_rows"] + c["new_in_holdout"]
    assert not any(base_data.in_holdout(t, 10) for t in trained_on["text"])
    assert registry.champion(db_url, settings.model_name).version == 1
    # once promoted, the next retrain starts from where this one's labels ended
    promoted = registry.promote(db_url, settings.model_name, 2, changed_by="test", reason="test")
    assert retrain.labels_since(promoted) == datetime.fromisoformat(ts.trained_until) == held["created_at"].min()
    assert retrain.labels_since(promoted) < until  # the held-out recent slice is trained on next time
    with pytest.raises(SkipRetrain, match="champion changed during this run"):
        retrain.register_candidate(settings, ts, candidate, result, changed_by="test")
