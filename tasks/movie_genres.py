"""Movie genres: the three most likely genres of a poster, and which pass the threshold."""

from __future__ import annotations

import numpy as np

from core.bundle import Bundle
from core.multilabel import label_thresholds

NAME = "movie_genres"
TITLE = "Movie genres"
API_NAME = "movie_genres"
DESCRIPTION = "Upload a movie poster: the model gives its three most likely genres and which pass the threshold."
TRAIN_COMMAND = "python -m training.movie_genres --data DIR --out models/movie_genres"
TOP_K = 3


def predict(bundle: Bundle, image, threshold: float | None = None) -> tuple[dict[str, float], str]:
    """Poster -> ({genre: probability} for the 3 most likely, a sentence naming those that pass)."""
    scores = bundle.scores(image)
    thresholds = label_thresholds(bundle.metadata, threshold)
    top = np.argsort(-scores, kind="stable")[:TOP_K]
    genres = {bundle.labels[i]: float(scores[i]) for i in top}
    passing = [bundle.labels[i] for i in top if scores[i] >= thresholds[i]]
    if passing:
        verdict = f"Passes the threshold: {', '.join(passing)}."
    else:
        verdict = "None of the three passes the threshold: the model is unsure about this poster."
    return genres, verdict


def tab(bundle: Bundle, ui):
    import gradio as gr

    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "clipboard"], label="Poster")
        with gr.Column():
            genres = gr.Label(num_top_classes=TOP_K, label="Three most likely genres")
            verdict = gr.Textbox(label="Genres that pass the threshold", interactive=False)
    threshold = ui.threshold_slider(bundle, "genre")
    button = gr.Button("Find the genres", variant="primary")
    button.click(ui.guarded(predict, bundle), inputs=[image, threshold], outputs=[genres, verdict], api_name=API_NAME,
                 concurrency_limit=ui.CONCURRENCY)
    ui.examples(bundle, image)
