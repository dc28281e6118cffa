"""Caries segmentation: a mask over a dental radiograph, one colour per class, and the area affected."""

from __future__ import annotations

from typing import Literal

from core import flags, schema, scores
from core.bundle import Bundle
from core.errors import fraction
from core.images import WORKING_SIDE, load_image, upright_size
from core.segmentation import areas, blend, colors, lesion_masks, letterbox, resize_mask, restore

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


# A picture at least twice this long is shown reduced by a whole factor (Pillow's reduce, a box
# average: 2 ms for 2048 px, where a resize to exactly this side takes 17 ms and a JPEG of the
# whole picture 7 ms), so the overlay is between this and twice it long (bench/serve.py).
PREVIEW_SIDE = 1024


def predict(bundle: Bundle, image, threshold: float | None = None, opacity: float = 0.5):
    """Radiograph -> (the radiograph with each class's lesions painted in its colour, at most
    2 * PREVIEW_SIDE long; area rows; summary).

    Areas are counted on masks of exactly the decoded image's size, which is the uploaded image
    itself unless its long side exceeds 2048 px (then it is downscaled on decode, and the summary
    says so)."""
    picture = load_image(image)
    pixels, box = letterbox(picture, bundle.input_size[0])
    masks, table, text = from_output(bundle, picture, box, bundle.network("segmenter")(pixels[None])[0], threshold)
    return overlay(picture, masks, bundle.labels, fraction(opacity, "opacity")), table, text


def from_output(bundle: Bundle, picture, box, output, threshold: float | None = None):
    """The network's output for one letterboxed picture -> (masks, H x W x classes of the picture's
    size, boolean; area rows; summary): what `predict` shows, and predict.py writes, also for batches."""
    threshold = float(bundle.metadata["thresholds"]["global"]) if threshold is None else fraction(threshold, "threshold")
    masks = lesion_masks(restore(output, box), bundle.metadata["activation"], threshold)
    rows = areas(masks, bundle.labels)
    table = [[row["class"], row["pixels"], round(float(row["percent"]), 3)] for row in rows]
    return masks, table, summary(rows, picture.size, upright_size(picture), threshold)


def overlay(picture, masks, labels: list[str], opacity: float):
    """The picture with the masks painted over it, less than 2 * PREVIEW_SIDE long (masks scaled
    with it, nearest neighbour): one picture, encoded once."""
    factor = max(picture.size) // PREVIEW_SIDE
    if factor > 1:
        picture = picture.reduce(factor)
        masks = resize_mask(masks, *picture.size)
    return blend(picture, masks, labels, opacity)


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
    legend = " ".join(f'<span style="color:{colour}">■</span> {label}' for label, colour in colors(bundle.labels).items())
    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "clipboard"], label="Dental radiograph")
        with gr.Column():
            # JPEG: a radiograph is a photo-like picture, and one encode of it is most of a request's own time.
            painted = gr.Image(label="Lesions", type="pil", format="jpeg", interactive=False)
            gr.Markdown(legend)
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
    outputs = [painted, area, verdict]
    button.click(handler, inputs=[image, threshold, opacity], outputs=outputs, api_name=API_NAME,
                 **ui.SHARED)

    for slider in (threshold, opacity):
        ui.rerun_on_release(slider, handler, [image, threshold, opacity], outputs)
    # A mask is not corrected in a dropdown: the flag carries the user's words only.
    confirmation, _ = ui.flag_controls(flagging, flags.flag_comment, f"{API_NAME}_flag", image, verdict)
    ui.reset_on_change([image, verdict], [confirmation])
    ui.examples(bundle, image)
