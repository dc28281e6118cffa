"""Hamburger or sandwich: a classifier built from an Open Images subset."""

from __future__ import annotations

from core.bundle import Bundle

NAME = "sandwich"
TITLE = "Hamburger or sandwich"
API_NAME = "sandwich"
DESCRIPTION = "Is it a hamburger or a sandwich? Upload a photo of food: the model, trained on Open Images crops, decides."
TRAIN_COMMAND = ('python -m training.open_images --classes "Hamburger" "Sandwich" --meta META --out data/sandwich'
                 " && python -m training.sandwich --data data/sandwich/images_cropped --out models/sandwich")


def predict(bundle: Bundle, image) -> dict[str, float]:
    """Photo -> {class: probability} for every class, most likely first."""
    probabilities = bundle.scores(image)
    ranked = sorted(zip(bundle.labels, probabilities), key=lambda pair: -pair[1])
    return {label: float(p) for label, p in ranked}


def tab(bundle: Bundle, ui):
    import gradio as gr

    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "clipboard"], label="Photo of food")
        verdict = gr.Label(num_top_classes=len(bundle.labels), label="Verdict")
    button = gr.Button("Decide", variant="primary")
    button.click(ui.guarded(predict, bundle), inputs=image, outputs=verdict, api_name=API_NAME,
                 concurrency_limit=ui.CONCURRENCY)
    ui.examples(bundle, image)
