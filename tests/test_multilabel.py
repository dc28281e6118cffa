"""The multi-label core: threshold search, metrics, the decision rule, on hand-made tables."""

import numpy as np
import pytest

from core.multilabel import decide, label_thresholds
from training import evaluation, multilabel


def f1_score(tp, fp, fn) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def brute_force_best_f1(scores, targets):
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = (predicted & targets).sum()
        best = max(best, f1_score(tp, (predicted & ~targets).sum(), (~predicted & targets).sum()))
    return best


def test_threshold_search_maximises_f1_on_a_hand_made_table():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    targets = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=bool)
    # Keeping the top k gives F1 = .4, .667, .571, .75, .667, .8, .727, .667: best keeps six,
    # so the cut falls between 0.3 and 0.2.
    threshold = evaluation.best_threshold(scores, targets)
    assert threshold == pytest.approx(0.25)
    predicted = scores >= threshold
    f1 = f1_score((predicted & targets).sum(), (predicted & ~targets).sum(), (~predicted & targets).sum())
    assert f1 == pytest.approx(0.8) == pytest.approx(brute_force_best_f1(scores, targets))


def test_threshold_search_on_a_score_matrix_is_micro_and_ties_go_high():
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.55]])
    targets = np.array([[1, 0], [0, 1], [0, 1]], dtype=bool)
    # Keeping >= .55 is perfect (3 of 3); keeping >= .6 misses one: the cut goes between .55 and .3.
    assert evaluation.best_threshold(scores, targets) == pytest.approx((0.55 + 0.3) / 2)
    # Two equally good cuts: the higher threshold wins.
    assert evaluation.best_threshold(np.array([0.9, 0.5, 0.4]), np.array([1, 0, 1], dtype=bool)) == pytest.approx(0.2)


def test_per_label_thresholds_and_the_global_fallback():
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.6, 0.3], [0.2, 0.7, 0.1], [0.1, 0.2, 0.4]])
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    chosen = multilabel.choose_thresholds(scores, targets, ["a", "b", "c"])
    assert chosen["per_label"]["a"] == pytest.approx(0.5)    # between .8 and .2
    assert chosen["per_label"]["b"] == pytest.approx(0.4)    # between .6 and .2
    assert chosen["per_label"]["c"] == chosen["global"]       # no positive in validation


def test_metrics_on_a_hand_made_example():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6]])
    targets = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)
    metrics = evaluation.multilabel_metrics(scores, targets, np.array([0.5, 0.5, 0.5]), ["a", "b", "c"])
    # Predicted {a, b} and {b, c}: tp 3, fp 1, fn 0.
    assert metrics["f1_micro"] == pytest.approx(6 / 7)
    assert metrics["precision_micro"] == pytest.approx(0.75) and metrics["recall_micro"] == 1.0
    assert metrics["precision_at_1"] == 1.0 and metrics["recall_at_1"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["precision_at_3"] == pytest.approx((1 / 3 + 2 / 3) / 2) and metrics["recall_at_3"] == 1.0
    # AP: a ranks its positive first (1); b ranks image 2 second (1/2); c first (1).
    assert metrics["per_label"]["b"]["average_precision"] == pytest.approx(0.5)
    assert metrics["mean_average_precision"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics["f1_macro"] == pytest.approx((1 + 2 / 3 + 1) / 3)


def test_baselines():
    train = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=np.float32)
    test = np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)
    result = multilabel.baselines(train, test)
    assert result["most_frequent_k"] == 1  # an average training image has 1.33 labels
    assert result["most_frequent_f1_micro"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert result["all_negative_f1_micro"] == 0.0


def test_decision_rule_ranks_caps_and_falls_back():
    labels = ["a", "b", "c", "d"]
    scores = np.array([0.2, 0.9, 0.6, 0.7])
    thresholds = np.full(4, 0.5)
    assert [d.label for d in decide(scores, labels, thresholds, max_count=2, fallback_k=3)] == ["b", "d"]
    below = decide(scores, labels, np.full(4, 0.95), max_count=2, fallback_k=3)
    assert [(d.label, d.passed) for d in below] == [("b", False), ("d", False), ("c", False)]


def test_user_threshold_maps_onto_each_labels_tuned_threshold():
    metadata = {"labels": ["a", "b"], "thresholds": {"global": 0.4, "per_label": {"a": 0.2, "b": 0.6}}}
    assert label_thresholds(metadata).tolist() == [0.2, 0.6]
    assert label_thresholds(metadata, 0.4).tolist() == pytest.approx([0.2, 0.6])
    assert label_thresholds(metadata, 0.0).tolist() == [0.0, 0.0]
    assert label_thresholds(metadata, 1.0).tolist() == pytest.approx([1.0, 1.0])
    steps = np.array([label_thresholds(metadata, t) for t in np.linspace(0, 1, 21)])
    assert (np.diff(steps, axis=0) >= 0).all()  # a higher threshold never lets more labels pass
    # A score of 0.99 passes at 0.95, whatever the label's tuned threshold.
    assert (label_thresholds(metadata, 0.95) <= 0.99).all()
