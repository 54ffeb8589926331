"""Temperature scaling, ECE and the abstention threshold on synthetic numbers."""

from __future__ import annotations

import numpy as np
import pytest

from ml.calibrate import abstention_threshold, ece, fit_temperature
from ml.serving import softmax


def test_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    overconfident = true_logits * 3.0
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.15)
    assert ece(softmax(overconfident, t), y) < ece(softmax(overconfident), y) / 2
    assert ece(softmax(overconfident, t), y) < 0.03


def test_ece_of_perfect_and_wrong_predictions() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ece(probs, np.array([0, 1])) == pytest.approx(0.0)
    assert ece(probs, np.array([1, 0])) == pytest.approx(1.0)


def test_threshold_separates_out_of_scope() -> None:
    conf = np.array([0.95, 0.9, 0.85, 0.8, 0.4, 0.35, 0.3])
    correct = np.array([True, True, True, True, False, False, False])
    is_ood = np.array([False, False, False, False, True, True, True])
    best = abstention_threshold(conf, correct, is_ood)
    assert 0.4 < best["threshold"] <= 0.8
    assert best["in_scope_accuracy"] == 1.0 and best["ood_recall"] == 1.0
    target = abstention_threshold(conf, correct, is_ood, target_ood_recall=0.3)
    assert target["threshold"] <= 0.35 and target["ood_recall"] >= 0.3
    assert abstention_threshold(conf, correct, np.zeros(7, dtype=bool))["threshold"] is None
