"""The multi-label decision rule, shared by every multi-label tab.

A bundle stores a global threshold and one per label, both chosen on the
validation split (training/multilabel.py). The user's threshold t maps onto
each label's own bar piecewise-linearly: t = 0 lets every label pass, t equal
to the tuned global threshold gives each label exactly its tuned threshold,
t = 1 lets only certainties pass. Each bar stays in [0, 1] and rises with t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import fraction


@dataclass
class Decision:
    label: str
    score: float
    passed: bool  # False: shown only because nothing passed (marked "below threshold")


def label_thresholds(metadata: dict, threshold: float | None = None) -> np.ndarray:
    """Each label's threshold for the user's `threshold` (None: the tuned ones)."""
    tuned = metadata["thresholds"]
    per_label = np.array([tuned["per_label"][label] for label in metadata["labels"]], dtype=np.float64)
    if threshold is None:
        return per_label
    t, g = fraction(threshold, "threshold"), float(np.clip(tuned["global"], 1e-6, 1 - 1e-6))
    if t <= g:
        return per_label * (t / g)
    return per_label + (1.0 - per_label) * ((t - g) / (1.0 - g))


def decide(scores, labels: list[str], thresholds, max_count: int, fallback_k: int) -> list[Decision]:
    """Labels whose score passes their threshold, best first, at most `max_count`;
    when none passes, the `fallback_k` best, marked as below threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    passed = [i for i in order if scores[i] >= thresholds[i]][:max_count]
    if passed:
        return [Decision(labels[i], float(scores[i]), True) for i in passed]
    return [Decision(labels[i], float(scores[i]), False) for i in order[:fallback_k]]
