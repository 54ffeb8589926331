"""ml.serving on the tiny model: order, top-k, abstention, and no torch in the process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml.serving import Classifier
from triage.taxonomy import bank

INTENTS, URGENCIES = bank().intent_names, tuple(bank().urgencies)


TEXTS = [
    "My card has not arrived yet.",
    "Hi,\n\nI was charged twice for the same coffee and want my money back. Please refund it as soon as "
    "possible, it is the third time this happens and I am getting tired of it.\n\nThanks, Sam",
    "close my account",
    "Someone took money out of my account that I do not recognise, this looks like fraud!",
    "what is the exchange rate for euros",
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("int8", "tolerance"), [(False, 1e-4), (True, 0.05)])
def test_batch_predictions_match_single_predictions_in_input_order(tiny_model: Path, int8: bool,
                                                                   tolerance: float) -> None:
    """Sorting and padding inside a batch must not change answers. Dynamic int8 quantises activations
    with a scale taken over the whole batch, so its confidences may move slightly with the company."""
    clf = Classifier.load(tiny_model, threads=1, int8=int8)
    batch = clf.predict(TEXTS)
    assert len(batch.predictions) == len(TEXTS) and batch.latency_ms > 0
    for text, pred in zip(TEXTS, batch.predictions, strict=True):
        single = clf.predict([text]).predictions[0]
        for head in ("intent", "urgency"):
            margin = single[head].top_k[0].score - single[head].top_k[1].score
            if margin > 2 * tolerance:  # a near-tie may legitimately flip under int8
                assert pred[head].label == single[head].label
            assert pred[head].confidence == pytest.approx(single[head].confidence, abs=tolerance)


def test_heads_topk_and_confidence(tiny_model: Path) -> None:
    clf = Classifier.load(tiny_model, threads=1, int8=False)
    assert clf.heads == {"intent": list(INTENTS), "urgency": list(URGENCIES)}
    pred = clf.predict(["I lost my card"]).predictions[0]
    for head, labels in clf.heads.items():
        p = pred[head]
        assert len(p.top_k) == 3 and p.top_k[0].label == p.label and p.label in labels
        assert p.top_k[0].score == pytest.approx(p.confidence)
        assert [s.score for s in p.top_k] == sorted((s.score for s in p.top_k), reverse=True)
    assert clf.predict([]).predictions == []


def test_abstains_below_the_folder_threshold(tiny_model: Path, tmp_path: Path) -> None:
    """A model without a distance scorer (softmax abstention, or a folder from before scorers)."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / "ood.json").unlink()
    (folder / "thresholds.json").write_text(json.dumps({"intent": 1.01, "urgency": None}))
    preds = Classifier.load(folder).predict(TEXTS).predictions
    assert all(p["intent"].abstained for p in preds)
    assert not any(p["urgency"].abstained for p in preds)
    (folder / "thresholds.json").write_text(json.dumps({"intent": 0.0, "urgency": 0.0}))
    assert not any(p["intent"].abstained for p in Classifier.load(folder).predict(TEXTS).predictions)


def test_the_distance_scorer_abstains_above_its_threshold_and_ignores_the_softmax_one(
        tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "ood.json").read_text())
    assert meta["method"] == "mahalanobis" and meta["head"] == "intent"
    clf = Classifier.load(folder)
    distances = clf.scorer.score(clf.features(TEXTS)) if clf.scorer else None
    assert distances is not None and distances.shape == (len(TEXTS),) and (distances > 0).all()
    (folder / "thresholds.json").write_text(json.dumps({"intent": 1.01, "urgency": None}))  # not used for intent
    cut = float(sorted(distances)[2])  # the two farthest texts lie above it
    (folder / "ood.json").write_text(json.dumps({**meta, "threshold": cut}))
    preds = Classifier.load(folder).predict(TEXTS).predictions
    assert [p["intent"].abstained for p in preds] == [bool(d > cut) for d in distances]
    assert sum(p["intent"].abstained for p in preds) == 2


def test_missing_file_names_it(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Classifier.load(folder)


def test_serving_and_registry_import_without_torch(tiny_model: Path) -> None:
    """Runs in the stream environment when it exists (it has no torch at all), else in this one."""
    stream_python = ROOT / ".venv-stream" / "bin" / "python"
    python = str(stream_python) if stream_python.exists() else sys.executable
    code = (
        "import sys, pathlib; import ml.registry; from ml.serving import Classifier; "
        f"r = Classifier.load(pathlib.Path({str(tiny_model)!r})).predict(['my card is lost']); "
        "assert r.predictions[0]['intent'].label; "
        "heavy = sorted(m for m in ('torch', 'transformers', 'sklearn', 'pandas') if m in sys.modules); "
        "print('heavy:', heavy)"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "heavy: []"
