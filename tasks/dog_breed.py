"""Dog breed: the five most likely of the Stanford Dogs breeds for a photo."""

from __future__ import annotations

import numpy as np

from core.bundle import Bundle

NAME = "dog_breed"
TITLE = "Dog breed"
API_NAME = "dog_breed"
DESCRIPTION = "Upload a photo of a dog: the model names the five most likely of the Stanford Dogs breeds."
TRAIN_COMMAND = "python -m training.dog_breed --data DIR --out models/dog_breed"
TOP_K = 5


def predict(bundle: Bundle, image) -> dict[str, float]:
    """Image (path, bytes or PIL) -> {breed name: probability} for the top 5 breeds."""
    probabilities = bundle.scores(image)
    top = np.argsort(probabilities)[::-1][:TOP_K]
    return {bundle.labels[i]: float(probabilities[i]) for i in top}


def tab(bundle: Bundle, ui):
    """Declare this tab's components and wire them to `predict`."""
    import gradio as gr

    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "clipboard"], label="Photo of a dog")
        breeds = gr.Label(num_top_classes=TOP_K, label="Most likely breeds")
    button = gr.Button("Identify the breed", variant="primary")
    button.click(ui.guarded(predict, bundle), inputs=image, outputs=breeds, api_name=API_NAME,
                 concurrency_limit=ui.CONCURRENCY)
    ui.examples(bundle, image)
