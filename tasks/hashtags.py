"""Hashtags: hashtag suggestions for a photo, ranked, with a threshold the user can move."""

from __future__ import annotations

from core import schema, scores
from core.bundle import Bundle
from core.multilabel import decide, label_thresholds

NAME = "hashtags"
TITLE = "Hashtags"
API_NAME = "hashtags"
DESCRIPTION = "Upload a photo: the model suggests hashtags, most confident first. Lower the threshold for more."
TRAIN_COMMAND = "python -m training.hashtags --data DIR --out models/hashtags"
# How predict.py reads this task: its kind of predictor and the options that apply.
KIND = "classifier"
CSV_EXTRAS = ("hashtags",)  # predict.py's columns beside the scores
PREDICT_OPTIONS = ("threshold",)
# The model training.demo builds when the tab has none: the recipe module whose build_demo makes it, and
# about how long that takes on 2 CPU cores with another build beside it.
DEMO_RECIPE, DEMO_SECONDS = "training.hashtags", 35
# What this tab reads of task.json (core/schema.py): a bundle that lacks it is refused at start, with a notice.
METADATA = schema.MultiLabelMetadata
# The held-out figures shown under the model, next to their baselines.
headline = scores.multilabel_headline
FALLBACK_K = 5
BELOW = " (below threshold)"


def predict(bundle: Bundle, image, threshold: float | None = None) -> tuple[dict[str, float], str]:
    """Image -> ({tag: score} for the tags that pass, or the top 5 marked below threshold; "#a #b" line)."""
    return from_scores(bundle, bundle.scores(image), threshold)


def from_scores(bundle: Bundle, scores, threshold: float | None = None) -> tuple[dict[str, float], str]:
    """The network's output for one image -> what `predict` returns (also for batches: predict.py)."""
    decisions = decide(scores, bundle.labels, label_thresholds(bundle.metadata, threshold),
                       bundle.metadata.get("max_labels", 10), FALLBACK_K)
    tags = {d.label + ("" if d.passed else BELOW): d.score for d in decisions}
    line = " ".join(f"#{d.label}" for d in decisions if d.passed)
    return tags, line


def tag_of(shown: str) -> str:
    """The tag behind a key of `predict`'s answer (which marks the tags below threshold)."""
    return shown.removesuffix(BELOW)


def tab(bundle: Bundle, ui, flagging=None):
    ui.multilabel_tab(bundle, predict, API_NAME, "Photo", "Suggested hashtags", bundle.metadata.get("max_labels", 10),
                      "Hashtags to copy", "tag", "Suggest hashtags", copy=True, flagging=flagging, label_of=tag_of)
