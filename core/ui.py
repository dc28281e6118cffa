"""Gradio pieces every tab uses: the image input, the error guard, examples, status lines."""

from __future__ import annotations

import inspect
import logging

import gradio as gr

from core.images import ImageError
from core.source import Resolved

# Requests of one tab run up to this many at a time (TensorFlow releases the GIL in its ops).
CONCURRENCY = 4
MAX_FILE_SIZE = "25mb"
DEMO_BANNER = "⚠️ **Demo model trained on synthetic data — its predictions mean nothing.**"

log = logging.getLogger("app")


class ImageUpload(gr.Image):
    """gr.Image that hands the uploaded file's path to our loader untouched.

    gr.Image(type="filepath") opens the file with Pillow before the handler runs, so a
    non-image or an empty upload would fail with Pillow's traceback; core.images
    decodes it instead and names the problem.
    """

    is_template = True  # reuse gr.Image's front end (as gradio.templates does)
    # No __init__ override: Gradio sends the front end the parameters named in
    # __init__'s signature, so a **kwargs signature would send none. Use type="filepath".

    def preprocess(self, payload):
        if payload is None or (payload.url or "").startswith("data:") or payload.path is None:
            return super().preprocess(payload)
        return str(payload.path)


def guarded(predict, bundle):
    """Wrap a task's plain `predict(bundle, image)` as an event handler with clear errors."""

    def handler(image, *options):
        if image is None:
            raise gr.Error("Upload an image first.")
        try:
            return predict(bundle, image, *options)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        except Exception:
            log.exception("prediction failed")
            raise gr.Error("The model failed on this image; the server log has the details.") from None

    # Gradio names the endpoint's parameters after the handler's (the API page, gradio_client's
    # keywords): give it predict's, less the bundle, rather than param_1, param_2.
    handler.__signature__ = inspect.Signature(list(inspect.signature(predict).parameters.values())[1:])
    return handler


def threshold_slider(bundle, noun: str):
    """The multi-label threshold, starting at the bundle's tuned global threshold."""
    default = round(bundle.metadata["thresholds"]["global"], 2)
    return gr.Slider(0.0, 1.0, value=default, step=0.01, label="Threshold",
                     info=f"0 shows every {noun}, 1 only certain ones; at {default} (tuned on validation) "
                          f"each {noun} uses its own tuned threshold.")


def label_tab(bundle, predict, api_name: str, image_label: str, result_label: str, button: str, top_k: int):
    """A single-label classifier's tab: a photo in, its most likely classes out (gr.Label)."""
    with gr.Row():
        image = ImageUpload(type="filepath", sources=["upload", "clipboard"], label=image_label)
        result = gr.Label(num_top_classes=top_k, label=result_label)
    gr.Button(button, variant="primary").click(guarded(predict, bundle), inputs=image, outputs=result,
                                               api_name=api_name, concurrency_limit=CONCURRENCY)
    examples(bundle, image)


def multilabel_tab(bundle, predict, api_name: str, image_label: str, result_label: str, top_k: int,
                   text_label: str, noun: str, button: str, copy: bool = False):
    """A multi-label model's tab: a photo and a threshold in, the labels (gr.Label) and a line of
    text out."""
    with gr.Row():
        image = ImageUpload(type="filepath", sources=["upload", "clipboard"], label=image_label)
        with gr.Column():
            labels = gr.Label(num_top_classes=top_k, label=result_label)
            text = gr.Textbox(label=text_label, buttons=["copy"] if copy else None, interactive=False)
    threshold = threshold_slider(bundle, noun)
    gr.Button(button, variant="primary").click(guarded(predict, bundle), inputs=[image, threshold],
                                               outputs=[labels, text], api_name=api_name,
                                               concurrency_limit=CONCURRENCY)
    examples(bundle, image)


def examples(bundle, image_input):
    """The bundle's own example images (held-out photos, or the demo generator's pictures)."""
    folder = bundle.path / "examples"
    files = sorted(str(p) for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    if files:
        gr.Examples(examples=[[f] for f in files], inputs=image_input, label="Examples")


def status(resolved: Resolved) -> str:
    """Markdown: demo banner, notices, where the model came from and its held-out metrics."""
    lines = []
    if resolved.bundle is not None and resolved.bundle.is_demo:
        lines.append(DEMO_BANNER)
    lines += [f"⚠️ {notice}" for notice in resolved.notices]
    if resolved.bundle is not None:
        metrics = resolved.bundle.metadata.get("metrics", {})
        figures = ", ".join(
            f"{name.replace('_', ' ')} {value:.3f}" for name, value in metrics.items()
            if isinstance(value, float)
        )
        lines.append(f"Model: `{resolved.origin}` · held-out: {figures or 'no metrics recorded'}")
    return "\n\n".join(lines)
