"""Hamburger or sandwich: a classifier built from an Open Images subset."""

from __future__ import annotations

from core import schema, scores
from core.bundle import Bundle

NAME = "sandwich"
TITLE = "Hamburger or sandwich"
API_NAME = "sandwich"
DESCRIPTION = "Is it a hamburger or a sandwich? Upload a photo of food: the model, trained on Open Images crops, decides."
TRAIN_COMMAND = ('python -m training.open_images --classes "Hamburger" "Sandwich" --meta META --out data/sandwich'
                 " && python -m training.sandwich --data data/sandwich/images_cropped --out models/sandwich")
# How predict.py reads this task: its kind of predictor and the options that apply.
KIND = "classifier"
PREDICT_OPTIONS = ()
# The model training.demo builds when the tab has none: the recipe module whose build_demo makes it, and
# about how long that takes on 2 CPU cores with another build beside it.
DEMO_RECIPE, DEMO_SECONDS = "training.sandwich", 15
# What this tab reads of task.json (core/schema.py): a bundle that lacks it is refused at start, with a notice.
METADATA = schema.ClassifierMetadata
# The held-out figures shown under the model, next to their baselines.
headline = scores.classifier_headline


def predict(bundle: Bundle, image) -> dict[str, float]:
    """Photo -> {class: probability} for every class, most likely first."""
    return from_scores(bundle, bundle.scores(image))


def from_scores(bundle: Bundle, probabilities) -> dict[str, float]:
    """The network's output for one image -> what `predict` returns (also for batches: predict.py)."""
    ranked = sorted(zip(bundle.labels, probabilities), key=lambda pair: -pair[1])
    return {label: float(p) for label, p in ranked}


def tab(bundle: Bundle, ui, flagging=None):
    ui.label_tab(bundle, predict, API_NAME, "Photo of food", "Verdict", "Decide", len(bundle.labels), flagging)
