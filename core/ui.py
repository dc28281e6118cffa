"""Gradio pieces every tab uses: the image input, the error guard, examples, status lines."""

from __future__ import annotations

import inspect
import logging

import gradio as gr

from core.errors import InputError
from core.images import ImageError
from core.source import Resolved

# Requests of one tab run up to this many at a time (TensorFlow releases the GIL in its ops).
CONCURRENCY = 4
MAX_FILE_SIZE = "25mb"
DEMO_BANNER = "⚠️ **Demo model trained on synthetic data — its predictions mean nothing.**"
MODEL_FAILED = "The model failed on this image; the server log has the details."

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


def guarded(predict, bundle, failed: str = MODEL_FAILED):
    """Wrap a task's plain `predict(bundle, image, ...)` (or interpret, or flag: any function whose
    second parameter is the upload) as an event handler with clear errors; `failed` is said when
    the server is at fault."""

    def handler(image, *options):
        if image is None:
            raise gr.Error("Upload an image first.", print_exception=False)
        try:
            return predict(bundle, image, *options)
        except InputError as error:
            # The user's mistake, not the server's: one line in the log, no traceback.
            log.info("rejected %s: %s", "upload" if isinstance(error, ImageError) else "request", error)
            raise gr.Error(str(error), print_exception=False) from None
        except Exception:
            log.exception("%s failed", getattr(predict, "__name__", "request"))
            raise gr.Error(failed, print_exception=False) from None

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
    handler = guarded(predict, bundle)
    gr.Button(button, variant="primary").click(handler, inputs=[image, threshold], outputs=[labels, text],
                                               api_name=api_name, concurrency_limit=CONCURRENCY)
    rerun_on_release(threshold, handler, [image, threshold], [labels, text])
    examples(bundle, image)


def rerun_on_release(slider, handler, inputs, outputs):
    """Run the tab again when the user lets go of a slider (not an endpoint of its own); before
    anything is uploaded, moving it changes nothing."""

    def rerun(picture, *options):
        return (gr.skip(),) * len(outputs) if picture is None else handler(picture, *options)

    slider.release(rerun, inputs=inputs, outputs=outputs, api_visibility="private", concurrency_limit=CONCURRENCY)


def example_files(bundle) -> list:
    """The bundle's example images (held-out photos, or the demo generator's pictures)."""
    folder = bundle.path / "examples"
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def examples(bundle, image_input):
    files = example_files(bundle)
    if files:
        gr.Examples(examples=[[str(f)] for f in files], inputs=image_input, label="Examples")


def status(resolved: Resolved, headline=None) -> str:
    """Markdown: demo banner, notices, where the model came from in words, and a small table of the
    held-out figures that matter for the task (`headline(metadata)`: rows of name, value, baseline)."""
    lines = []
    if resolved.bundle is not None and resolved.bundle.is_demo:
        lines.append(DEMO_BANNER)
    lines += [f"⚠️ {notice}" for notice in resolved.notices]
    if resolved.bundle is not None:
        lines.append(f"Model: {resolved.described or resolved.origin}")
        rows = headline(resolved.bundle.metadata) if headline else []
        if rows:
            table = ["| held-out (test split) | model | baseline |", "|---|---|---|"]
            table += [f"| {name} | {_figure(value)} | {_baseline(baseline)} |" for name, value, baseline in rows]
            lines.append("\n".join(table))
        else:
            lines.append("No held-out figures recorded for this model.")
    return "\n\n".join(lines)


def _figure(value) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _baseline(baseline) -> str:
    if not baseline or baseline[0] is None:
        return "—"
    value, name = baseline
    return f"{_figure(value)} ({name})"
