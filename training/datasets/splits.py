"""How a dataset is divided into training, validation and test parts."""

from __future__ import annotations

import numpy as np


def stratified_split(labels, fractions=(0.8, 0.1, 0.1), seed=0):
    """Index arrays for each fraction, every class divided in the same proportions."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.round(np.cumsum(fractions) / np.sum(fractions) * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, bounds[:-1])):
            part.extend(chunk.tolist())
    return [np.array(sorted(part), dtype=int) for part in parts]
