"""Retraining on production labels: build the training set, fine-tune, compare with the champion.

The stages the `retrain_classifier` DAG runs, one function each:

1. `build_training_set`: production labels since the champion's labels ended (each ticket's latest
   feedback; a confirmation keeps the decision's labels; the text is the masked text the model
   classified). The newest share is held out as the *recent slice* (the next retrain trains on it);
   the rest joins the champion's full *base data* (every row it was made from, stored with it and
   checked against the fingerprint it recorded: `ml.base_data`), corrected labels repeated
   `correction_weight` times (the training loop has no sample weights; the repeats can land in its
   validation split, which only makes early stopping and calibration slightly optimistic). The
   hash-chosen holdout of the base data (`ml.base_data.in_holdout`, the champion's `holdout_percent`)
   is the *fixed holdout*: the first training left it out and so does every retrain, new labels whose
   text falls in it included, so no model has trained on it. The candidate's base data is the
   champion's plus the new training labels, once each. Too few new labels: `SkipRetrain` with the counts.
2. `fine_tune`: the champion's own recipe (training_args.json), warm-started from the whole champion
   (encoder, tokenizer and heads; a label new to the taxonomy starts fresh).
3. `compare`: candidate and champion served as production serves them (ONNX int8) on the fixed
   holdout and the recent slice; the candidate qualifies only with a macro-F1 gain of at least
   `margin` on the recent slice, no loss beyond `margin` on the fixed holdout, and no class whose
   F1 drops by more than `max_class_regression` (classes with at least `MIN_CLASS_SUPPORT` rows).
4. `register_candidate`: registers a qualifying candidate with every number in its metrics.

Every stage takes explicit time bounds (the DAG run's data interval), never the clock.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ml import layout
from ml.base_data import in_holdout, write_frame
from triage import db
from triage.errors import TriageError
from triage.labels import LABEL_HEADS as HEADS
from triage.names import T_DECISIONS, T_TICKETS, V_LABELLED_DECISIONS, qualified
from triage.schemas import ModelVersion
from triage.settings import Settings

Say = Callable[[str], None]

# A class needs this many rows in an evaluation set before its F1 change can block a candidate.
MIN_CLASS_SUPPORT = 10
TRAIN_FILE = "train.csv"
CANDIDATE_BASE_FILE = "candidate_base_data.csv.gz"  # the champion's base data plus the new training labels
FIXED_FILE = "fixed_holdout.csv"
RECENT_FILE = "recent.csv"
LABELS_FILE = "new_labels.csv"  # every new label with its split and whether it is a correction (for audit)
SUMMARY_FILE = "training_set.json"

# Production labels come from the view that defines them (a confirmation keeps the decision's label);
# a ticket belongs to the window in which its latest feedback arrived.
LABELS_SQL = f"""
SELECT l.ticket_id, l.feedback_kind AS kind, l.labelled_at AS created_at,
       coalesce(nullif(d.masked_text, ''), concat_ws(E'\\n', nullif(t.subject_masked, ''), t.body_masked)) AS text,
       l.label_intent AS intent, l.label_urgency AS urgency,
       d.intent AS predicted_intent, d.urgency AS predicted_urgency
FROM {qualified(V_LABELLED_DECISIONS)} l
JOIN {qualified(T_DECISIONS)} d ON d.ticket_id = l.ticket_id
LEFT JOIN {qualified(T_TICKETS)} t ON t.ticket_id = l.ticket_id
WHERE l.labelled_at >= %(since)s AND l.labelled_at < %(until)s AND l.model_name = %(name)s
ORDER BY l.ticket_id
"""


class RetrainError(TriageError, RuntimeError):
    """Retraining cannot go on; the message says why and what to do."""


class SkipRetrain(RetrainError):
    """Nothing to do this run (too few labels, no champion); not a failure."""


@dataclass(frozen=True)
class RetrainConfig:
    min_new_labels: int = 200
    holdout_fraction: float = 0.2
    correction_weight: float = 3.0
    margin: float = 0.01
    max_class_regression: float = 0.05
    epochs: int = 3
    time_budget_s: float = 1800.0
    base_data: Path | None = None
    threads: int | None = None
    seed: int = 0

    @classmethod
    def from_settings(cls, s: Settings) -> RetrainConfig:
        return cls(min_new_labels=s.retrain_min_new_labels, holdout_fraction=s.retrain_holdout_fraction,
                   correction_weight=s.retrain_correction_weight, margin=s.retrain_promotion_margin,
                   max_class_regression=s.retrain_max_class_regression, epochs=s.retrain_epochs,
                   time_budget_s=s.retrain_time_budget_s, base_data=s.retrain_base_data,
                   threads=s.serving_threads)


@dataclass
class TrainingSet:
    """Where the three frames were written and how many rows of each kind they hold."""

    work_dir: str
    champion_version: int
    since: str
    until: str
    # Labels before this were trained on; the held-out recent slice starts here, so the next retrain uses it.
    trained_until: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    # The champion's base data: where it was read, its fingerprint and rows, its holdout's (`ml.base_data`).
    base_data: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return Path(self.work_dir) / name


def labels_since(champion: ModelVersion) -> datetime:
    """Where the champion's labels end: the start of its retrain's held-out slice (those labels were not trained
    on, so the next retrain uses them), else its registration time."""
    bound = (champion.metrics.get("retrain") or {}).get("trained_until")
    return datetime.fromisoformat(bound) if bound else champion.created_at


def label_window(settings: Settings, until: datetime) -> tuple[ModelVersion, datetime]:
    """The champion and the start of the labels it has not seen; SkipRetrain without a champion."""
    from ml import registry

    champ = registry.champion(settings.db_url(), settings.model_name)
    if champ is None:
        raise SkipRetrain(f"model {settings.model_name} has no champion to improve on; run `triage up` "
                          "(it bootstraps one) or promote a version")
    since = labels_since(champ)
    if since >= until:
        raise SkipRetrain(f"the champion v{champ.version} already covers labels up to {since.isoformat()}, "
                          f"after this run's end {until.isoformat()}")
    return champ, since


def production_labels(url: str, name: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Each ticket's latest label given in [since, until) on decisions of model `name`, oldest first."""
    with db.connect(url) as conn:
        rows = conn.execute(LABELS_SQL, {"since": since, "until": until, "name": name}).fetchall()
    cols = ["ticket_id", "kind", "created_at", "text", "intent", "urgency", "predicted_intent", "predicted_urgency"]
    frame = pd.DataFrame([dict(r) for r in rows], columns=cols)
    frame = frame[frame["text"].fillna("").str.strip() != ""]
    frame = frame[frame["intent"].notna() | frame["urgency"].notna()]
    return frame.sort_values(["created_at", "ticket_id"], kind="stable").reset_index(drop=True)


def is_correction(frame: pd.DataFrame) -> pd.Series:
    """True where the human label differs from what the acting model predicted."""
    intent_diff = frame["intent"].notna() & (frame["intent"] != frame["predicted_intent"])
    urgency_diff = frame["urgency"].notna() & (frame["urgency"] != frame["predicted_urgency"])
    return intent_diff | urgency_diff


def split_recent(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-based split: the newest `fraction` of labels (at least one row) is held out."""
    n_recent = max(1, int(math.ceil(len(frame) * fraction)))
    cut = len(frame) - n_recent
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def weight_corrections(frame: pd.DataFrame, weight: float, seed: int) -> pd.DataFrame:
    """Repeat corrected rows so each counts `weight` times (fractional parts by a seeded draw)."""
    rng = random.Random(seed)
    whole, part = int(weight), weight - int(weight)
    repeats = [
        (whole + (1 if part and rng.random() < part else 0)) if corrected else 1
        for corrected in is_correction(frame)
    ]
    return frame.loc[frame.index.repeat(repeats)].reset_index(drop=True)


def recipe(model_dir: Path) -> dict[str, Any]:
    """How the model in `model_dir` was made (its training_args.json; empty for a folder without one)."""
    return layout.read_json(model_dir, layout.TRAINING_ARGS) if (model_dir / layout.TRAINING_ARGS).is_file() else {}


def base_data(cfg: RetrainConfig, champion_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The champion's full base data (text + label columns, every row it was made from) and what identifies it:
    `cfg.base_data`, else the copy stored with the champion, checked against the fingerprint the champion
    recorded. RetrainError, naming the fix, when it is missing or is other data."""
    from ml import base_data as stored
    from ml.data import DataError

    made = recipe(champion_dir)
    expected = str(made.get("base_fingerprint") or "")
    if not expected:
        raise RetrainError(f"the champion in {champion_dir} records no base data (trained before models kept theirs "
                           f"in {layout.BASE_DATA}), so a retrain cannot start from every row it was made from: "
                           "train a champion with `triage train` and promote it")
    path = Path(cfg.base_data or champion_dir / layout.BASE_DATA)
    fix = ("set TRIAGE_RETRAIN_BASE_DATA to a copy of the champion's base data, or unset it to use the copy "
           f"in {champion_dir}" if cfg.base_data else
           f"re-register the champion's folder with its {layout.BASE_DATA}, or set TRIAGE_RETRAIN_BASE_DATA to a "
           "copy of it")
    if not path.is_file():
        raise RetrainError(f"the champion's base data {path} is missing (fingerprint {expected[:16]}): {fix}")
    try:
        frame, ds = stored.read(path, label_cols=list(made.get("label_cols") or HEADS),
                                ood_label=made.get("ood_label"))
    except DataError as exc:
        raise RetrainError(f"base data {path} cannot be read as the champion's ({exc}): {fix}") from None
    if ds.fingerprint() != expected:
        raise RetrainError(f"base data {path} has fingerprint {ds.fingerprint()[:16]}, the champion was trained on "
                           f"{expected[:16]}: {fix}")
    info = {"source": str(path), **stored.describe(ds, int(made.get("holdout_percent", 0)))}
    return frame.reindex(columns=["text", *HEADS]), info


def build_training_set(settings: Settings, cfg: RetrainConfig, *, until: datetime, work_dir: Path,
                       say: Say = print) -> TrainingSet:
    """Write train / fixed holdout / recent slice CSVs for one run into `work_dir`; SkipRetrain with the reason."""
    from ml import registry

    url, name = settings.db_url(), settings.model_name
    champ, since = label_window(settings, until)
    labels = production_labels(url, name, since, until)
    if len(labels) < cfg.min_new_labels:
        raise SkipRetrain(f"too few new labels: {len(labels)} since {since.isoformat()} (champion v{champ.version}), "
                          f"{cfg.min_new_labels} needed (TRIAGE_RETRAIN_MIN_NEW_LABELS)")
    new_train, recent = split_recent(labels, cfg.holdout_fraction)
    base, base_info = base_data(cfg, registry.verified_path(champ))
    percent = int(base_info["holdout_percent"])
    fixed_mask = base["text"].map(lambda t: in_holdout(str(t), percent))
    fixed, base_train = base[fixed_mask], base[~fixed_mask]
    new_held = new_train["text"].map(lambda t: in_holdout(str(t), percent))
    trainable = new_train[~new_held].reset_index(drop=True)
    weighted = weight_corrections(trainable, cfg.correction_weight, cfg.seed)
    train = pd.concat([base_train, weighted[["text", *HEADS]]], ignore_index=True)
    candidate_base = pd.concat([base, new_train[["text", *HEADS]]], ignore_index=True)
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    train.to_csv(work_dir / TRAIN_FILE, index=False)
    write_frame(candidate_base, work_dir / CANDIDATE_BASE_FILE)
    fixed.to_csv(work_dir / FIXED_FILE, index=False)
    recent[["ticket_id", "created_at", "text", *HEADS]].to_csv(work_dir / RECENT_FILE, index=False)
    split_names = ["holdout" if held else "train" for held in new_held] + ["recent"] * len(recent)
    audit = labels[["ticket_id", "created_at", "kind", *HEADS]].assign(correction=is_correction(labels),
                                                                      split=split_names)
    audit.to_csv(work_dir / LABELS_FILE, index=False)
    corrections = int(is_correction(trainable).sum())
    ts = TrainingSet(
        work_dir=str(work_dir), champion_version=champ.version, since=since.isoformat(), until=until.isoformat(),
        trained_until=pd.Timestamp(recent["created_at"].min()).isoformat(),
        counts={"new_labels": len(labels), "new_train": len(new_train), "new_in_holdout": int(new_held.sum()),
                "corrections": corrections, "confirmations": len(trainable) - corrections,
                "weighted_new_rows": len(weighted), "base_rows": len(base), "base_train": len(base_train),
                "train_rows": len(train), "fixed_holdout": len(fixed), "recent_slice": len(recent),
                "candidate_base_rows": len(candidate_base)},
        base_data=base_info,
    )
    layout.write_json(work_dir, SUMMARY_FILE, asdict(ts))
    say(f"training set for {name} (champion v{champ.version}, labels {ts.since} .. {ts.until}): "
        + ", ".join(f"{k} {v}" for k, v in ts.counts.items()))
    return ts


def load_training_set(work_dir: Path) -> TrainingSet:
    return TrainingSet(**layout.read_json(Path(work_dir), SUMMARY_FILE))


def fine_tune(settings: Settings, cfg: RetrainConfig, ts: TrainingSet, *, say: Say = print) -> Path:
    """Fine-tune the champion (its recipe, warm-started from the whole model) on the training set; the candidate
    stores the champion's base data plus the new labels as its own. Returns the candidate's folder."""
    from ml import registry
    from ml.data import load_file
    from ml.train import TrainingArgs, train

    champ = registry.get(settings.db_url(), settings.model_name, ts.champion_version)
    champ_dir = registry.verified_path(champ)
    made = recipe(champ_dir)
    keep = ("label_cols", "ood_label", "target_ood_recall", "abstention", "batch_size", "lr_encoder", "lr_heads",
            "weight_decay", "warmup_ratio", "dropout", "max_length", "val_fraction", "holdout_percent",
            "reference_rows")
    out = ts.path("candidate")
    if out.exists():
        shutil.rmtree(out)
    args = TrainingArgs(
        output_dir=str(out), data=str(ts.path(TRAIN_FILE)), base=str(champ_dir), init_from=str(champ_dir),
        base_data=str(ts.path(CANDIDATE_BASE_FILE)), epochs=cfg.epochs, patience=cfg.epochs,
        time_budget_s=cfg.time_budget_s, seed=cfg.seed, threads=cfg.threads, progress=False, export=True,
        **{k: made[k] for k in keep if k in made},
    )
    taxonomy = registry.taxonomy_of(champ)
    args.label_cols = [c for c in args.label_cols if c in HEADS] or list(HEADS)
    if args.ood_label is None:
        args.ood_label = taxonomy.out_of_scope
    if (champ_dir / layout.TAXONOMY).is_file():  # the candidate keeps the champion's label set (JSON is YAML)
        args.taxonomy = str(champ_dir / layout.TAXONOMY)
    dataset = load_file(ts.path(TRAIN_FILE), label_cols=args.label_cols, ood_label=args.ood_label,
                        known_heads=taxonomy.heads)
    say(f"fine-tuning v{champ.version} of {champ.name} on {len(dataset)} rows for up to {cfg.epochs} epochs")
    train(args, say=say, dataset=dataset)
    return out


def evaluate(model_dir: Path, frame: pd.DataFrame, threads: int = 2) -> dict[str, Any]:
    """Per head: macro-F1, accuracy and per-class F1 of a model folder served as production serves it."""
    import numpy as np
    from sklearn.metrics import f1_score

    from ml.serving import Classifier

    clf = Classifier.load(model_dir, threads=threads, int8=(model_dir / layout.ONNX_INT8).is_file())
    texts = [str(t) for t in frame["text"]]
    preds = clf.predict(texts).predictions if texts else []
    out: dict[str, Any] = {}
    for head, labels in clf.heads.items():
        if head not in frame.columns:
            continue
        truth = [None if pd.isna(v) else str(v) for v in frame[head]]
        keep = [i for i, v in enumerate(truth) if v is not None and v in labels]  # out-of-scope is no class
        if not keep:
            continue
        y = [str(truth[i]) for i in keep]
        p = [preds[i][head].label for i in keep]
        classes = sorted(set(y))
        per_class = f1_score(y, p, labels=classes, average=None, zero_division=0)
        out[head] = {
            "rows": len(keep),
            "accuracy": float(np.mean([a == b for a, b in zip(y, p, strict=True)])),
            "macro_f1": float(np.mean(per_class)),
            "per_class_f1": {c: float(f) for c, f in zip(classes, per_class, strict=True)},
            "support": {c: y.count(c) for c in classes},
        }
    return out


def score(result: dict[str, Any]) -> float:
    """Mean macro-F1 over the heads evaluated."""
    values = [h["macro_f1"] for h in result.values()]
    return sum(values) / len(values) if values else 0.0


def compare(candidate: dict[str, dict[str, Any]], champion: dict[str, dict[str, Any]], cfg: RetrainConfig
            ) -> dict[str, Any]:
    """The registration verdict from evaluations on `fixed_holdout` and `recent` sets; pure."""
    reasons: list[str] = []
    numbers: dict[str, Any] = {}
    for split in ("fixed_holdout", "recent"):
        cand, champ = candidate.get(split, {}), champion.get(split, {})
        numbers[split] = {"candidate": round(score(cand), 4), "champion": round(score(champ), 4),
                          "gain": round(score(cand) - score(champ), 4)}
    recent_gain, fixed_gain = numbers["recent"]["gain"], numbers["fixed_holdout"]["gain"]
    if not candidate.get("recent"):
        reasons.append("the recent slice has no labelled rows to compare on")
    elif recent_gain < cfg.margin:
        reasons.append(f"macro-F1 gain on the recent slice {recent_gain:+.4f} is below the margin {cfg.margin:.4f}")
    if fixed_gain < -cfg.margin:
        reasons.append(f"macro-F1 on the fixed holdout drops by {-fixed_gain:.4f} (more than the margin "
                       f"{cfg.margin:.4f})")
    regressions: list[dict[str, Any]] = []
    per_class: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}  # split -> head -> class -> before / after
    for split in ("fixed_holdout", "recent"):
        for head, champ_head in champion.get(split, {}).items():
            cand_head = candidate.get(split, {}).get(head)
            if cand_head is None:
                continue
            table = per_class.setdefault(split, {}).setdefault(head, {})
            for cls, before in champ_head["per_class_f1"].items():
                after = cand_head["per_class_f1"].get(cls, 0.0)
                support = champ_head["support"].get(cls, 0)
                table[cls] = {"support": support, "champion_f1": round(before, 4), "candidate_f1": round(after, 4),
                              "change": round(after - before, 4)}
                if support >= MIN_CLASS_SUPPORT and before - after > cfg.max_class_regression:
                    regressions.append({"split": split, "head": head, "class": cls, "champion_f1": round(before, 4),
                                        "candidate_f1": round(after, 4)})
    if regressions:
        worst = max(regressions, key=lambda r: r["champion_f1"] - r["candidate_f1"])
        reasons.append(f"{len(regressions)} class(es) regress by more than {cfg.max_class_regression:.4f} F1, worst "
                       f"{worst['head']}={worst['class']} on {worst['split']}: {worst['champion_f1']:.4f} -> "
                       f"{worst['candidate_f1']:.4f}")
    better = not reasons
    summary = (f"candidate beats the champion: recent slice {recent_gain:+.4f}, fixed holdout {fixed_gain:+.4f} "
               f"macro-F1 (margin {cfg.margin:.4f}), no class regresses beyond {cfg.max_class_regression:.4f}"
               if better else "candidate not registered: " + "; ".join(reasons))
    return {"better": better, "summary": summary, "reasons": reasons, "scores": numbers,
            "class_regressions": regressions, "per_class": per_class, "min_class_support": MIN_CLASS_SUPPORT,
            "margin": cfg.margin, "max_class_regression": cfg.max_class_regression}


def evaluate_pair(settings: Settings, cfg: RetrainConfig, ts: TrainingSet, candidate_dir: Path,
                  *, say: Say = print) -> dict[str, Any]:
    """Evaluate candidate and champion on the same two sets, compare, and write `comparison.json`."""
    from ml import registry
    from ml.data import read_frame

    champ = registry.get(settings.db_url(), settings.model_name, ts.champion_version)
    champ_dir = registry.verified_path(champ)
    sets = {"fixed_holdout": read_frame(ts.path(FIXED_FILE)), "recent": read_frame(ts.path(RECENT_FILE))}
    threads = cfg.threads or 2
    cand_eval = {k: evaluate(candidate_dir, f, threads) for k, f in sets.items()}
    champ_eval = {k: evaluate(champ_dir, f, threads) for k, f in sets.items()}
    result = compare(cand_eval, champ_eval, cfg)
    result.update({"champion_version": champ.version, "labels_since": ts.since, "labels_until": ts.until,
                   "trained_until": ts.trained_until, "counts": ts.counts, "base_data": ts.base_data,
                   "candidate_eval": cand_eval, "champion_eval": champ_eval})
    (ts.path("comparison.json")).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    say(result["summary"])
    return result


# What the registered candidate's metrics keep of the comparison: its retrain record.
RECORD_KEYS = ("champion_version", "labels_since", "labels_until", "trained_until", "counts", "base_data", "scores",
               "class_regressions", "per_class", "max_class_regression", "min_class_support", "summary")


def register_candidate(settings: Settings, ts: TrainingSet, candidate_dir: Path, comparison: dict[str, Any], *,
                       changed_by: str) -> ModelVersion:
    """Register a candidate that `compare` found better; its metrics carry the comparison."""
    from ml import registry

    if not comparison.get("better"):
        raise SkipRetrain(comparison.get("summary") or "candidate is not better than the champion")
    url, name = settings.db_url(), settings.model_name
    current = registry.champion(url, name)
    if current is None or current.version != ts.champion_version:
        now = f"v{current.version}" if current else "none"
        raise SkipRetrain(f"the champion changed during this run (compared with v{ts.champion_version}, now {now}); "
                          "the next run compares with the new champion")
    metrics = layout.read_json(candidate_dir, layout.METRICS)
    metrics["retrain"] = {k: comparison[k] for k in RECORD_KEYS}
    return registry.register(url, candidate_dir, name=name, status="candidate", changed_by=changed_by,
                             reason=comparison["summary"], metrics=metrics, models_dir=settings.models_dir)


def clean(work_dir: Path) -> int:
    """Delete the candidate model folder of a finished run (the registry keeps its own copy); keep the small
    audit files (training set CSVs, comparison.json). Returns the bytes freed."""
    folder = Path(work_dir) / "candidate"
    if not folder.is_dir():
        return 0
    freed = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    shutil.rmtree(folder)
    return freed
