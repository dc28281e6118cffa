"""Caries segmentation: a mask over a dental radiograph, one colour per class, and the area affected."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

from core import flags, schema, scores
from core.bundle import Bundle
from core.errors import fraction
from core.images import WORKING_SIDE, load_image
from core.segmentation import areas, colors, lesion_masks, letterbox, restore

NAME = "caries"
TITLE = "Caries segmentation"
API_NAME = "caries"
DESCRIPTION = ("Upload a dental radiograph (greyscale or colour, any size): the model marks the lesions it finds, "
               "one colour per class, and says how much of the image they cover.")
TRAIN_COMMAND = ("python -m training.caries_masks --annotations EXPORT --images DIR --out data/caries"
                 " && python -m training.caries --data data/caries --out models/caries")
# How predict.py reads this task: its kind of predictor and the options that apply.
KIND = "segmentation"
PREDICT_OPTIONS = ("threshold",)
# The model training.demo builds when the tab has none: the recipe module whose build_demo makes it, and
# about how long that takes on 2 CPU cores with another build beside it.
DEMO_RECIPE, DEMO_SECONDS = "training.caries", 55


class Metadata(schema.TaskMetadata):
    """What this tab reads of task.json: a bundle that lacks it is refused at start, with a notice."""

    required_networks = ("segmenter",)
    thresholds: schema.Tuned
    activation: Literal["sigmoid", "softmax"]


METADATA = Metadata


def headline(metadata: dict) -> list:
    """The held-out figures shown under the model, next to their baselines (core.scores)."""
    return [row for row in [
        ("Dice, mean over classes", scores.metric(metadata, "dice_mean"),
         (scores.metric(metadata, "baselines.all_lesion_dice"), "every pixel marked")),
        ("IoU, mean over classes", scores.metric(metadata, "iou_mean"), None)] if row[1] is not None]


HEADERS = ["Class", "Pixels", "% of image"]


def predict(bundle: Bundle, image, threshold: float | None = None, opacity: float = 0.5):
    """Radiograph -> ((image, [(mask, class)]), area rows, summary).

    Masks have exactly the size of the decoded image, which is the uploaded image itself
    unless its long side exceeds 2048 px (then it is downscaled on decode, and the summary
    says so); areas are counted on those masks. Each mask's values are the opacity where
    the class is present and 0 elsewhere: gr.AnnotatedImage uses them as the overlay's alpha.
    """
    picture = load_image(image)
    pixels, box = letterbox(picture, bundle.input_size[0])
    return from_output(bundle, image, picture, box, bundle.network("segmenter")(pixels[None])[0], threshold, opacity)


def from_output(bundle: Bundle, image, picture, box, output, threshold: float | None = None, opacity: float = 0.5):
    """The network's output for one letterboxed picture -> what `predict` returns (also for batches:
    predict.py); `image` is the upload itself, whose header gives its original size."""
    threshold = float(bundle.metadata["thresholds"]["global"]) if threshold is None else fraction(threshold, "threshold")
    opacity = fraction(opacity, "opacity")
    probabilities = restore(output, box)
    masks = lesion_masks(probabilities, bundle.metadata["activation"], threshold)
    rows = areas(masks, bundle.labels)
    table = [[row["class"], row["pixels"], round(float(row["percent"]), 3)] for row in rows]
    annotations = [(masks[..., k].astype(np.float32) * opacity, label) for k, label in enumerate(bundle.labels)]
    return (shown(picture), annotations), table, summary(rows, picture.size, original_size(image), threshold)


def shown(picture) -> np.ndarray:
    """The base image as sent to the page: one channel when the radiograph is grey, which makes
    Gradio's PNG encoding of it about 4x faster (measured: 86 vs 371 ms at 1200 x 800)."""
    pixels = np.asarray(picture)
    grey = (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return pixels[..., 0] if grey else pixels


def original_size(image) -> tuple[int, int] | None:
    """The uploaded file's own size from its header (the decoded image may be smaller)."""
    try:
        source = io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image
        with Image.open(source) as file:
            return file.size
    except Exception:  # load_image already decoded it; this only feeds a note
        return None


def summary(rows, size, original, threshold) -> str:
    width, height = size
    total = rows[-1]
    text = (f"{total['percent']:.2f} % of the image ({total['pixels']} of {width * height} pixels) is marked as "
            f"{'a lesion' if len(rows) == 1 else 'some lesion'} at threshold {threshold:.2f}.")
    if original and original != (width, height) and max(original) > WORKING_SIDE:
        text += (f" The {original[0]} x {original[1]} upload was downscaled to {width} x {height} on decoding; "
                 f"the mask and the pixel counts are at that size (percentages do not depend on it).")
    return text


def tab(bundle: Bundle, ui, flagging=None):
    import gradio as gr

    threshold_default = round(float(bundle.metadata["thresholds"]["global"]), 2)
    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "clipboard"], label="Dental radiograph")
        overlay = gr.AnnotatedImage(label="Lesions", color_map=colors(bundle.labels), format="png", show_legend=True)
    with gr.Row():
        threshold = gr.Slider(0.0, 1.0, value=threshold_default, step=0.01, label="Probability threshold",
                              info=f"A pixel is marked when its lesion probability reaches this; "
                                   f"{threshold_default} was tuned on validation.")
        opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
    button = gr.Button("Find the lesions", variant="primary")
    area = gr.Dataframe(headers=HEADERS, datatype=["str", "number", "number"], label="Area per class",
                        interactive=False)
    verdict = gr.Textbox(label="Summary", interactive=False)
    handler = ui.guarded(predict, bundle)
    outputs = [overlay, area, verdict]
    button.click(handler, inputs=[image, threshold, opacity], outputs=outputs, api_name=API_NAME,
                 **ui.SHARED)

    for slider in (threshold, opacity):
        ui.rerun_on_release(slider, handler, [image, threshold, opacity], outputs)
    # A mask is not corrected in a dropdown: the flag carries the user's words only.
    confirmation, _ = ui.flag_controls(flagging, flags.flag_comment, f"{API_NAME}_flag", image, verdict)
    ui.reset_on_change([image, verdict], [confirmation])
    ui.examples(bundle, image)
