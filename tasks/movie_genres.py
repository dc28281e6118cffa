"""Movie genres: the three most likely genres of a poster, and which pass the threshold."""

from __future__ import annotations

import numpy as np

from core import schema, scores
from core.bundle import Bundle
from core.multilabel import label_thresholds

NAME = "movie_genres"
TITLE = "Movie genres"
API_NAME = "movie_genres"
DESCRIPTION = "Upload a movie poster: the model gives its three most likely genres and which pass the threshold."
TRAIN_COMMAND = "python -m training.movie_genres --data DIR --out models/movie_genres"
# How predict.py reads this task: its kind of predictor and the options that apply.
KIND = "classifier"
CSV_EXTRAS = ("verdict",)  # predict.py's columns beside the scores
PREDICT_OPTIONS = ("threshold",)
# The model training.demo builds when the tab has none: the recipe module whose build_demo makes it, and
# about how long that takes on 2 CPU cores with another build beside it.
DEMO_RECIPE, DEMO_SECONDS = "training.movie_genres", 35
# What this tab reads of task.json (core/schema.py): a bundle that lacks it is refused at start, with a notice.
METADATA = schema.MultiLabelMetadata
# The held-out figures shown under the model, next to their baselines.
headline = scores.multilabel_headline
TOP_K = 3


def predict(bundle: Bundle, image, threshold: float | None = None) -> tuple[dict[str, float], str]:
    """Poster -> ({genre: probability} for the 3 most likely, a sentence naming those that pass)."""
    return from_scores(bundle, bundle.scores(image), threshold)


def from_scores(bundle: Bundle, scores, threshold: float | None = None) -> tuple[dict[str, float], str]:
    """The network's output for one image -> what `predict` returns (also for batches: predict.py)."""
    thresholds = label_thresholds(bundle.metadata, threshold)
    top = np.argsort(-scores, kind="stable")[:TOP_K]
    genres = {bundle.labels[i]: float(scores[i]) for i in top}
    passing = [bundle.labels[i] for i in top if scores[i] >= thresholds[i]]
    if passing:
        verdict = f"Passes the threshold: {', '.join(passing)}."
    else:
        verdict = "None of the three passes the threshold: the model is unsure about this poster."
    return genres, verdict


def tab(bundle: Bundle, ui, flagging=None):
    ui.multilabel_tab(bundle, predict, API_NAME, "Poster", "Three most likely genres", TOP_K,
                      "Genres that pass the threshold", "genre", "Find the genres", flagging=flagging)
