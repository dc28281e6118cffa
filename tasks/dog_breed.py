"""Dog breed: the five most likely of the Stanford Dogs breeds for a photo."""

from __future__ import annotations

import numpy as np

from core import schema, scores
from core.bundle import Bundle

NAME = "dog_breed"
TITLE = "Dog breed"
API_NAME = "dog_breed"
DESCRIPTION = "Upload a photo of a dog: the model names the five most likely of the Stanford Dogs breeds."
TRAIN_COMMAND = "python -m training.dog_breed --data DIR --out models/dog_breed"
# How predict.py reads this task: its kind of predictor and the options that apply.
KIND = "classifier"
CSV_EXTRAS = ("dog_probability",)  # predict.py's columns beside the scores
PREDICT_OPTIONS = ()
# The model training.demo builds when the tab has none: the recipe module whose build_demo makes it, and
# about how long that takes on 2 CPU cores with another build beside it.
DEMO_RECIPE, DEMO_SECONDS = "training.dog_breed", 10
# What this tab reads of task.json (core/schema.py): a bundle that lacks it is refused at start, with a notice.
METADATA = schema.ClassifierMetadata
# The held-out figures shown under the model, next to their baselines.
headline = scores.classifier_headline
TOP_K = 5
# Below this probability of showing a dog at all (ImageNet's dog classes summed), the tab says the
# picture does not look like a dog: measured 0.6-0.9 on real dog photos, under 0.05 on a cat, an
# eagle, a coffee cup and a cameraman (tests/test_pretrained_weights.py).
DOG_THRESHOLD = 0.5
RESULT_LABEL = "Most likely breeds"


def predict(bundle: Bundle, image):
    """Image (path, bytes or PIL) -> ({breed name: probability} for the top 5 breeds, the probability
    that the picture shows a dog at all, or None where the model has no such output)."""
    return from_scores(bundle, bundle.scores(image))


def from_scores(bundle: Bundle, scores):
    """The network's output for one image -> what `predict` returns (also for batches: predict.py)."""
    probabilities = scores["class"] if isinstance(scores, dict) else scores
    dog = float(np.ravel(scores["dog_probability"])[0]) if isinstance(scores, dict) else None
    top = np.argsort(probabilities)[::-1][:TOP_K]
    return {bundle.labels[i]: float(probabilities[i]) for i in top}, dog


def answer(bundle: Bundle, image):
    """The tab's outputs: the breeds (under a warning title when the picture does not look like a
    dog) and the dog probability."""
    import gradio as gr

    breeds, dog = predict(bundle, image)
    title = RESULT_LABEL if dog is None or dog >= DOG_THRESHOLD else \
        f"⚠️ This does not look like a dog (p = {dog:.2f}): the breeds are a guess"
    return gr.Label(breeds, label=title), dog


def tab(bundle: Bundle, ui, flagging=None):
    """Declare this tab's components and wire them to `answer` (Interpret and Flag: ui.label_tab)."""
    import gradio as gr

    extras = []
    if isinstance(bundle.network("classifier").model.output, dict):
        extras.append(lambda: gr.Number(label="Probability that the picture shows a dog (ImageNet's dog classes)",
                                        precision=3, interactive=False))
    ui.label_tab(bundle, answer if extras else lambda b, image: predict(b, image)[0], API_NAME, "Photo of a dog",
                 RESULT_LABEL, "Identify the breed", TOP_K, flagging, extras=extras)
