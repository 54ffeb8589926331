"""What a model folder carries: label maps matching triage.labels, how it was made, reference data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ml import layout
from ml.train import TrainingArgs
from triage.taxonomy import bank

HEADS, INTENTS, OOD_LABEL = bank().heads, bank().intent_names, bank().out_of_scope


def test_label_maps_match_triage_labels(tiny_model: Path) -> None:
    assert layout.read_heads(tiny_model) == {h: list(v) for h, v in HEADS.items()}
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["triage_heads"] == {h: list(v) for h, v in HEADS.items()}
    assert [config["id2label"][str(i)] for i in range(len(INTENTS))] == list(INTENTS)
    assert OOD_LABEL not in layout.read_heads(tiny_model)["intent"]


def test_folder_says_how_it_was_made(tiny_model: Path) -> None:
    args = TrainingArgs(**json.loads((tiny_model / layout.TRAINING_ARGS).read_text()))
    assert args.ood_label == OOD_LABEL and args.label_cols == ["intent", "urgency"]
    assert len(args.data_fingerprint) == 64 and args.train_rows > args.val_rows > 0
    metrics = json.loads((tiny_model / layout.METRICS).read_text())
    intent = metrics["validation"]["intent"]
    assert 0.0 <= intent["ece_after"] <= 1.0 and intent["temperature"] > 0
    assert json.loads((tiny_model / layout.THRESHOLDS).read_text())["intent"] == intent["abstention"]["threshold"]
    card = (tiny_model / layout.CARD).read_text()
    assert "## Limits" in card and "ECE" in card
    # The card states how the model abstains and what it was made from, with the figures the folder holds.
    ood = intent["ood"]
    assert "Mahalanobis distance" in card and f"threshold {ood['threshold']}" in card
    assert f"{args.base_rows} rows, fingerprint `{args.base_fingerprint[:16]}`" in card
    assert f"holdout never trained on: {args.holdout_rows} rows" in card and args.holdout_rows > 0
    for name in layout.REQUIRED_FOR_SERVING + (layout.ONNX_INT8, "model.safetensors", layout.HEADS_WEIGHTS):
        assert (tiny_model / name).is_file(), name


def test_reference_sample_for_drift(tiny_model: Path) -> None:
    ref = pd.read_csv(tiny_model / layout.REFERENCE)
    assert list(ref.columns) == ["text", "intent", "urgency"]
    assert 0 < len(ref) <= 2000
    assert OOD_LABEL in set(ref["intent"])
    assert set(ref["intent"]) <= set(INTENTS) | {OOD_LABEL}
