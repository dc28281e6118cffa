"""Dog breed: the five most likely of the Stanford Dogs breeds for a photo."""

from __future__ import annotations

import numpy as np

from core import scores
from core.bundle import Bundle

NAME = "dog_breed"
TITLE = "Dog breed"
API_NAME = "dog_breed"
DESCRIPTION = "Upload a photo of a dog: the model names the five most likely of the Stanford Dogs breeds."
TRAIN_COMMAND = "python -m training.dog_breed --data DIR --out models/dog_breed"
# The task.json keys this tab reads: a bundle without one is refused at start, with a notice.
REQUIRES = ("networks.classifier", "labels", "input.size")
# The held-out figures shown under the model, next to their baselines.
headline = scores.classifier_headline
TOP_K = 5


def predict(bundle: Bundle, image) -> dict[str, float]:
    """Image (path, bytes or PIL) -> {breed name: probability} for the top 5 breeds."""
    return from_scores(bundle, bundle.scores(image))


def from_scores(bundle: Bundle, probabilities) -> dict[str, float]:
    """The network's output for one image -> what `predict` returns (also for batches: predict.py)."""
    top = np.argsort(probabilities)[::-1][:TOP_K]
    return {bundle.labels[i]: float(probabilities[i]) for i in top}


def tab(bundle: Bundle, ui, flagging=None):
    """Declare this tab's components and wire them to `predict` (Interpret and Flag: ui.label_tab)."""
    ui.label_tab(bundle, predict, API_NAME, "Photo of a dog", "Most likely breeds", "Identify the breed", TOP_K,
                 flagging)
