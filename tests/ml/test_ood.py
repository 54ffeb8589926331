"""ml.ood: the distance scorer and the detection figures, on data with a known answer (no services)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml import ood


def _clusters(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, len(centres), n)
    return centres[y] + spread * rng.standard_normal((n, centres.shape[1])), y


def test_unknown_classes_score_farther_than_known_ones_and_the_scorer_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    known, unknown = rng.standard_normal((6, 16)), rng.standard_normal((3, 16))
    x, y = _clusters(rng, known, 1200, 0.15)
    scorer = ood.MahalanobisScorer.fit(x, y, head="intent")
    test_in, _ = _clusters(rng, known, 300, 0.15)
    test_out, _ = _clusters(rng, unknown, 300, 0.15)
    s_in, s_out = scorer.score(test_in), scorer.score(test_out)
    report = ood.detection_report(s_in, s_out)
    assert report["auroc"] > 0.99 and report["recall_at_3pct_false_alarm"] > 0.95
    assert np.median(s_out) > 10 * np.median(s_in)

    scorer.with_threshold(12.5).save(tmp_path, {"chosen_by": "test"})
    back = ood.load(tmp_path)
    assert back is not None and back.threshold == 12.5 and back.head == "intent"
    np.testing.assert_allclose(back.score(test_out), s_out, rtol=1e-4)
    (tmp_path / ood.OOD_META).write_text('{"method": "softmax", "head": "intent"}')
    assert ood.load(tmp_path) is None  # a softmax model has no scorer


def test_detection_figures_by_hand() -> None:
    in_scope = np.array([0.1, 0.2, 0.3, 0.4])
    out_of_scope = np.array([0.35, 0.5, 0.6, 0.7])
    # Pairs (out, in) ranked right: 4 + 4 + 4 + 3 of 16.
    assert ood.auroc(in_scope, out_of_scope) == pytest.approx(15 / 16)
    # Catching 95 % of 4 out-of-scope scores means flagging from 0.35 up: one in-scope score of four.
    assert ood.fpr_at_recall(in_scope, out_of_scope, 0.95) == pytest.approx(0.25)
    # At a false alarm of 0 (threshold at the largest in-scope score, 0.4), three of four are caught.
    assert ood.recall_at_false_alarm(in_scope, out_of_scope, 0.0) == pytest.approx(0.75)
