"""Gradio pieces every tab uses: the image input, the error guard, examples, status lines, and
under each result the Interpret button (Grad-CAM) and the Flag controls."""

from __future__ import annotations

import inspect
import logging
import os

import gradio as gr

from core import flags, interpret, settings
from core.errors import InputError
from core.images import ImageError
from core.source import Resolved, on_a_space

# Every tab's events share one limit (one concurrency group): the machine's cores are what they
# share. Up to this many requests are in flight at once; a network runs up to two passes side by
# side on a CPU (one on a GPU), and requests that find them busy share its next pass
# (core.batching.CompiledNetwork). Measured in docs/serving.md, "Under load".
CONCURRENCY = 8
SHARED = {"concurrency_limit": CONCURRENCY, "concurrency_id": "models"}
# Requests waiting beyond those in flight: past this, a request is refused at once with Gradio's
# "queue is full" error (the page says so) instead of joining a backlog nobody waits for.
QUEUE_SIZE = settings.number("QUEUE_SIZE", 64, minimum=1)
# Sessions whose copy of the page's settings Gradio keeps (Blocks.launch's state_session_capacity,
# default 10,000). Every API call without a session is a new session, and each copies the config of
# every component on our six-tab page (about 0.5 MB): at the default, memory grows by gigabytes and
# the garbage collector slows every request as it does (see docs/serving.md, "Under load"). No
# tab keeps per-session state (no gr.State), so an evicted session loses nothing.
SESSIONS = settings.number("SESSIONS", 200, minimum=1)
# Gradio 6.31's queue rebuilds its per-endpoint analytics summary (a pandas DataFrame over the last
# 10,000 events, for the latency figures on the API page) after every event, so each request cost
# more than the one before until 10,000 had been served: a tenth of the server's time after eight
# minutes at 10 requests/s (py-spy; docs/serving.md, "Under load"). Gradio's own setting
# GRADIO_ANALYTICS_CACHE_FREQUENCY, read when the queue is made, rebuilds it every 100 instead.
ANALYTICS_EVERY = 100
# Every upload, and every picture the page sends back, is a file in Gradio's cache (GRADIO_TEMP_DIR,
# one per distinct picture, each also held in a set in memory): a public demo that runs for weeks
# would fill its disk. Gradio's delete_cache removes those older than CACHE_MAX_AGE seconds, a day
# by default (a visitor can still flag the morning's photo; a flag keeps its own copy), checking
# every hour.
CACHE_MAX_AGE = settings.number("CACHE_MAX_AGE", 24 * 3600, minimum=1)
DELETE_CACHE = (min(3600, CACHE_MAX_AGE), CACHE_MAX_AGE)
# Age alone does not bound the cache: a day of uploads nobody's request used (an API client
# uploading in a loop) could fill the disk. Past APP_CACHE_MAX_MB in all, the oldest files go first,
# checked every CACHE_SWEEP seconds (`cap_cache`).
CACHE_MAX_MB = settings.number("CACHE_MAX_MB", 2000, float, minimum=1)
CACHE_SWEEP = 30
MAX_FILE_SIZE = "25mb"
DEMO_BANNER = "⚠️ **Demo model trained on synthetic data — its predictions mean nothing.**"
MODEL_FAILED = "The model failed on this image; the server log has the details."
HEATMAP_LABEL = "Where the model looked (Grad-CAM: red raised the answer most)"

log = logging.getLogger("app")


def cap_cache(folder, max_bytes: float, every: float = CACHE_SWEEP):
    """Start a daemon thread that keeps the files under `folder` (Gradio's cache) at most `max_bytes`
    in all, deleting the oldest first (by modification time) every `every` seconds. Returns it."""
    import threading
    import time
    from pathlib import Path

    def sweep():
        files = []
        for path in Path(folder).rglob("*"):
            try:
                if path.is_file():
                    stat = path.stat()
                    files.append((stat.st_mtime, stat.st_size, path))
            except OSError:  # deleted meanwhile (Gradio's own age-based deletion)
                continue
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def loop():
        while True:
            try:
                sweep()
            except OSError as error:
                log.warning("cache sweep: %s", error)
            time.sleep(every)

    thread = threading.Thread(target=loop, name="cache-cap", daemon=True)
    thread.start()
    return thread


def queue(demo: gr.Blocks) -> gr.Blocks:
    """The page's queue with the app's serving settings (above); a GRADIO_ANALYTICS_CACHE_FREQUENCY
    already set in the environment is kept."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


INLINE_REFUSED = ("Send the picture as an uploaded file (the page's upload, or gradio_client.handle_file): "
                  "pictures inside the request (data: URLs) or by address (URLs) are not accepted.")


class ImageUpload(gr.Image):
    """gr.Image that hands the uploaded file's path to our loader untouched, and takes uploaded
    files only.

    gr.Image(type="filepath") opens the file with Pillow before the handler runs, so a
    non-image or an empty upload would fail with Pillow's traceback; core.images
    decodes it instead and names the problem. A picture sent inline (a data: URL) or by
    address would be decoded or fetched by Gradio before any of our limits: refused
    (core/request_limits.py says why).
    """

    is_template = True  # reuse gr.Image's front end (as gradio.templates does)
    # No __init__ override: Gradio sends the front end the parameters named in
    # __init__'s signature, so a **kwargs signature would send none. Use type="filepath".

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path is None or (payload.url or "").startswith("data:"):
            raise gr.Error(INLINE_REFUSED, print_exception=False)
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


def label_tab(bundle, predict, api_name: str, image_label: str, result_label: str, button: str, top_k: int,
              flagging: flags.Flagging | None = None, extras=()):
    """A single-label classifier's tab: a photo in, its most likely classes out (gr.Label); under
    them Interpret (the top class's heatmap) and, unless flagging is off, Flag with the right label.
    `extras` declare more outputs (e.g. the dog probability): then `predict` returns a tuple, the
    classes first."""
    with gr.Row():
        with gr.Column():
            image = ImageUpload(type="filepath", sources=["upload", "clipboard"], label=image_label)
            run = gr.Button(button, variant="primary")
        with gr.Column():
            result = gr.Label(num_top_classes=top_k, label=result_label)
            more = [declare() for declare in extras]
            heatmap = interpret_controls(bundle, interpret.explain_label, f"{api_name}_interpret", [image])
    run.click(guarded(predict, bundle), inputs=image, outputs=[result, *more] if more else result, api_name=api_name,
              **SHARED)
    confirmation, corrections = flag_controls(flagging, flags.flag_label, f"{api_name}_flag", image, result, [
        lambda: gr.Dropdown(bundle.labels, value=None, label="The right label (optional)")])
    reset_on_change([image, result], [heatmap, confirmation, *corrections])
    examples(bundle, image)


def multilabel_tab(bundle, predict, api_name: str, image_label: str, result_label: str, top_k: int,
                   text_label: str, noun: str, button: str, copy: bool = False,
                   flagging: flags.Flagging | None = None, label_of=None):
    """A multi-label model's tab: a photo and a threshold in, the labels (gr.Label) and a line of
    text out; under them Interpret (the heatmap of one label shown, the top one by default) and,
    unless flagging is off, Flag with the right labels. `label_of(key)`: the model's label behind
    a key of the shown labels (default: the key itself)."""
    label_of = label_of or (lambda key: key)
    with gr.Row():
        with gr.Column():
            image = ImageUpload(type="filepath", sources=["upload", "clipboard"], label=image_label)
            threshold = threshold_slider(bundle, noun)
            run = gr.Button(button, variant="primary")
        with gr.Column():
            labels = gr.Label(num_top_classes=top_k, label=result_label)
            text = gr.Textbox(label=text_label, buttons=["copy"] if copy else None, interactive=False)
            # Choices come with each answer (those shown); any label of the model is accepted from the API.
            chosen = gr.Dropdown([], value=None, allow_custom_value=True, label=f"The {noun} to interpret",
                                 info=f"One of the {noun}s shown; the top one unless you pick.")
            heatmap = interpret_controls(bundle, interpret.explain_label, f"{api_name}_interpret", [image, chosen])
    handler = guarded(predict, bundle)
    run.click(handler, inputs=[image, threshold], outputs=[labels, text], api_name=api_name,
              **SHARED)
    rerun_on_release(threshold, handler, [image, threshold], [labels, text])
    confirmation, corrections = flag_controls(flagging, flags.flag_labels, f"{api_name}_flag", image, labels, [
        lambda: gr.Dropdown(bundle.labels, value=[], multiselect=True, label=f"The right {noun}s")])

    def shown(answer, current):
        keys = sorted(answer or {}, key=lambda key: -answer[key])
        choices = [(key, label_of(key)) for key in keys]
        values = [value for _, value in choices]
        return gr.Dropdown(choices=choices, value=current if current in values else (values or [None])[0])

    labels.change(shown, inputs=[labels, chosen], outputs=chosen, api_visibility="private",
                  show_progress="hidden")
    reset_on_change([image, labels], [heatmap, confirmation, *corrections])
    examples(bundle, image)


def interpret_controls(bundle, explain, api_name: str, inputs, label: str = HEATMAP_LABEL):
    """The Interpret button and the heatmap it shows: `explain(bundle, image, ...)` runs on request
    only, so predictions do not pay for it. Returns the heatmap component."""
    button = gr.Button("Interpret", size="md")
    # PNG: a heatmap's colours are the point; JPEG would smear them.
    heatmap = gr.Image(label=label, type="pil", format="png", interactive=False)
    button.click(guarded(explain, bundle), inputs=inputs, outputs=heatmap, api_name=api_name,
                 **SHARED)
    return heatmap


def flag_controls(flagging: flags.Flagging | None, flag, api_name: str, image, answer, corrections=()):
    """Under a result: the user's correction (each of `corrections` declares one input), a comment,
    the Flag button with what flagging stores and where (`flagging.notice`), and its confirmation. `flag(flagging, image, answer,
    *corrections, comment)` is a plain function of core.flags (or the task's). Returns
    (confirmation, correction components), or (None, []) with flagging off: then nothing is declared."""
    if flagging is None:
        return None, []
    with gr.Group():
        with gr.Row(equal_height=True):
            fields = [declare() for declare in corrections]
            comment = gr.Textbox(label="Comment (optional)", max_lines=3, max_length=flags.MAX_COMMENT)
            button = gr.Button("Flag", variant="secondary", scale=0, min_width=120)
        gr.Markdown(f"Wrong answer? {flagging.notice}", padding=True)
        confirmation = gr.Markdown(padding=True)
    button.click(guarded(flag, flagging, "The flag could not be saved; the server log has the details."),
                 inputs=[image, answer, *fields, comment], outputs=confirmation, api_name=api_name)
    return confirmation, fields


def reset_on_change(changed, outputs):
    """A new picture or a new answer (`changed`: components) empties what belonged to the last one:
    its heatmap, the flag's confirmation, the corrections picked."""
    outputs = [output for output in outputs if output is not None]
    if not outputs:
        return
    resets = [[] if getattr(output, "multiselect", False) else None for output in outputs]
    gr.on([component.change for component in changed], lambda: resets if len(resets) > 1 else resets[0],
          outputs=outputs, api_visibility="private", show_progress="hidden")


def rerun_on_release(slider, handler, inputs, outputs):
    """Run the tab again when the user lets go of a slider (not an endpoint of its own); before
    anything is uploaded, moving it changes nothing."""

    def rerun(picture, *options):
        return (gr.skip(),) * len(outputs) if picture is None else handler(picture, *options)

    slider.release(rerun, inputs=inputs, outputs=outputs, api_visibility="private", **SHARED)


EXAMPLE_LIMIT = 12  # examples shown per tab
_shown_examples: dict = {}


def example_files(bundle) -> list:
    """The bundle's example pictures as the page serves them: each decoded (with the pixel limit,
    EXIF turned) and written again by us, PNG for a PNG and JPEG for the rest, into a folder of the
    app's own; computed once per bundle. The page never serves a bundle's own bytes: a bundle may
    come from anyone's Hub repo, and its `examples/page.html` or `.svg` would run as a page on the
    app's own address. A file that is not a picture is left out, and logged."""
    import hashlib
    import tempfile
    from pathlib import Path

    from core.images import load_image

    if bundle.path in _shown_examples:
        return _shown_examples[bundle.path]
    folder, files = bundle.path / "examples", []
    shown = Path(tempfile.gettempdir()) / "vision-demos-examples" / hashlib.sha1(str(bundle.path).encode()).hexdigest()[:12]
    for source in sorted(p for p in folder.iterdir() if p.is_file())[:EXAMPLE_LIMIT] if folder.is_dir() else []:
        try:
            picture = load_image(source)
        except (ImageError, OSError) as error:
            log.warning("example %s left out: %s", source.name, error)
            continue
        png = source.suffix.lower() == ".png"
        target = shown / f"{source.stem[:60]}.{'png' if png else 'jpg'}"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, **({"format": "PNG"} if png else {"format": "JPEG", "quality": 92}))
        files.append(target)
    _shown_examples[bundle.path] = files
    return files


def examples(bundle, image_input):
    """The tab's examples (example_files: re-encoded by us)."""
    files = example_files(bundle)
    if files:
        gr.Examples(examples=[[str(f)] for f in files], inputs=image_input, label="Examples")


def status(resolved: Resolved, headline=None, train_command: str | None = None) -> str:
    """Markdown: demo banner, notices, where the model came from in words, and a small table of the
    held-out figures that matter for the task (`headline(metadata)`: rows of name, value, baseline)."""
    lines = []
    if resolved.bundle is not None and resolved.bundle.is_demo:
        lines.append(DEMO_BANNER)
    elif resolved.bundle is not None and resolved.bundle.kind == "pretrained":
        lines.append(pretrained_line(resolved.bundle.metadata["pretrained"], train_command))
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


def pretrained_line(pretrained: dict, train_command: str | None) -> str:
    """Where a pretrained bundle's weights come from, said on its tab."""
    line = (f"Pretrained weights from the `{pretrained.get('package', '?')}` {pretrained.get('version', '')} package "
            f"({pretrained.get('licence', 'licence unknown')}), not trained on this tab's dataset here.")
    return line + (f" `{train_command}` trains one on it." if train_command and not on_a_space() else "")


def _figure(value) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _baseline(baseline) -> str:
    if not baseline or baseline[0] is None:
        return "—"
    value, name = baseline
    return f"{_figure(value)} ({name})"
