"""Age & gender: find the faces, straighten each one, then gender and age.

Each step is shown: the picture with numbered face boxes, each straightened crop, the estimated
tilt, the gender probabilities and the age with the model's error band (held-out RMSE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from core import faces
from core.bundle import Bundle
from core.images import load_image

NAME = "age_gender"
TITLE = "Age & gender"
API_NAME = "age_gender"
DESCRIPTION = ("Upload a photo of a person: the model finds the faces (up to four), measures how far each head "
               "is tilted, straightens it, then estimates gender and age.")
TRAIN_COMMAND = "python -m training.age_gender --data DIR --out models/age_gender"
# The task.json keys this tab reads: a bundle without one is refused at start, with a notice.
REQUIRES = ("networks.rotation", "networks.gender_age", "labels", "input.size", "rotation.loss", "age.rmse",
            "face.crop_scale")
NO_FACE = "No face found: the results are for the whole picture, taken as one centred face."
BOX_COLOURS = ["#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#00c7be"]
SHOWN_SIDE = 160  # straightened crops are shown at this size


@dataclass
class FaceResult:
    box: tuple | None  # (left, top, right, bottom) of the detected face; None for the whole picture
    centre: tuple
    side: float  # side of the network's crop around the centre, in pixels
    angle: float  # estimated tilt, degrees counter-clockwise
    straightened: Image.Image
    gender: dict  # {label: probability}
    age: float


def analyse(bundle: Bundle, image: Image.Image) -> tuple[list[FaceResult], bool]:
    """Every face (at most the bundle's max_faces), straightened and read, and whether a face was
    found. Without one, the whole picture stands in for a single centred face, cropped as the
    training crops were (the central square that stays inside at any rotation)."""
    face = bundle.metadata["face"]
    found = faces.detect_faces(image, max_faces=face["max_faces"], angles=face["search_angles"],
                               detection_side=face["detection_side"])
    if found:
        regions = [(f.centre, f.side * face["crop_scale"], f.box) for f in found]
    else:
        regions = [((image.width / 2, image.height / 2), faces.inner_side(image.width, image.height), None)]
    size = bundle.input_size[0]

    def crops(angles):
        return np.stack([np.asarray(faces.rotated_crop(image, centre, side, -angle, size), np.float32)
                         for (centre, side, _), angle in zip(regions, angles)])

    def tilt(angles):
        return faces.decode_rotation(bundle.network("rotation")(crops(angles)), bundle.metadata["rotation"])

    # 1. How far is each face turned? Asked twice: the second look, at the once-straightened crop,
    # corrects what the first missed (a regressor tends to under-shoot large tilts).
    angles = tilt([0.0] * len(regions))
    angles = faces.wrap_angle(angles + tilt(angles))
    # 2. Turn the picture back around the face centre and crop again.
    straight = crops(angles)
    # 3. Gender and age on the straightened crops.
    outputs = bundle.network("gender_age")(straight)
    results = []
    for i, ((centre, side, box), angle) in enumerate(zip(regions, angles)):
        shown = faces.rotated_crop(image, centre, side, -float(angle), SHOWN_SIDE)
        gender = {label: float(p) for label, p in zip(bundle.labels, outputs["gender"][i])}
        results.append(FaceResult(box, centre, side, float(angle), shown, gender, float(outputs["age"][i].reshape(-1)[0])))
    return results, bool(found)


def age_text(bundle: Bundle, age: float) -> str:
    """'34 ± 6 years': the error band is the held-out RMSE stored in the bundle."""
    low, high = bundle.metadata["age"].get("range", [0, 100])
    return f"{np.clip(age, low, high):.0f} ± {bundle.metadata['age']['rmse']:.0f} years"


def describe(bundle: Bundle, number: int, result: FaceResult) -> str:
    gender, probability = max(result.gender.items(), key=lambda item: item[1])
    turn = "upright" if abs(result.angle) < 0.5 else f"tilted {abs(result.angle):.0f}° " + (
        "counter-clockwise" if result.angle > 0 else "clockwise")
    return f"**Face {number}**: {gender} ({probability:.0%}), {age_text(bundle, result.age)}, {turn}"


def annotate(image: Image.Image, results: list[FaceResult]) -> Image.Image:
    """The picture with each face's box and number, and the tilted square the network read."""
    shown = image.copy()
    draw = ImageDraw.Draw(shown)
    width = max(2, round(max(image.size) / 200))
    for number, result in enumerate(results, 1):
        colour = BOX_COLOURS[(number - 1) % len(BOX_COLOURS)]
        half = result.side / 2
        corners = [(result.centre[0] + dx, result.centre[1] + dy) for dx, dy in
                   ((-half, -half), (half, -half), (half, half), (-half, half))]
        # The crop that comes out upright: the square turned by the face's tilt.
        turned = [faces.rotate_point(p, result.angle, result.centre) for p in corners]
        draw.line(turned + turned[:1], fill=colour, width=max(1, width // 2))
        if result.box is not None:
            draw.rectangle(result.box, outline=colour, width=width)
            draw.text((result.box[0] + width + 2, result.box[1] + width), str(number), fill=colour,
                      font_size=max(12, int((result.box[3] - result.box[1]) / 4)))
    return shown


def predict(bundle: Bundle, image):
    """Photo (path, bytes or PIL) -> (annotated picture, [(straightened crop, caption)], face 1's
    tilt in degrees, face 1's {gender: probability}, face 1's age text, a Markdown summary of every
    face, with the no-face notice first when there was none)."""
    picture = load_image(image)
    results, found = analyse(bundle, picture)
    lines = [] if found else [f"⚠️ {NO_FACE}"]
    if len(results) > 1:
        lines.append(f"{len(results)} faces found; the gender, age and tilt fields show face 1 (most certain).")
    lines += [describe(bundle, number, result) for number, result in enumerate(results, 1)]
    gallery = [(r.straightened, f"Face {n}, straightened by {-r.angle:+.0f}°" if r.box is not None
                else f"Whole picture, straightened by {-r.angle:+.0f}°") for n, r in enumerate(results, 1)]
    first = results[0]
    return (annotate(picture, results), gallery, round(first.angle, 1), first.gender,
            age_text(bundle, first.age), "\n\n".join(lines))


def tab(bundle: Bundle, ui):
    import gradio as gr

    def predict_and_warn(bundle, image):
        outputs = predict(bundle, image)
        if NO_FACE in outputs[-1]:
            gr.Warning(NO_FACE)
        return outputs

    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "clipboard"], label="Photo of a person")
        annotated = gr.Image(label="Faces found (numbered)", type="pil", interactive=False, format="png")
    button = gr.Button("Estimate gender and age", variant="primary")
    summary = gr.Markdown(label="Every face")
    with gr.Row():
        crops = gr.Gallery(label="Straightened faces", columns=4, height=220, format="png")
        with gr.Column():
            angle = gr.Number(label="Face 1: tilt (degrees, counter-clockwise)", precision=1, interactive=False)
            age = gr.Textbox(label="Face 1: age (± held-out RMSE)", interactive=False)
        gender = gr.Label(num_top_classes=len(bundle.labels), label="Face 1: gender")
    button.click(ui.guarded(predict_and_warn, bundle), inputs=image,
                 outputs=[annotated, crops, angle, gender, age, summary], api_name=API_NAME,
                 concurrency_limit=ui.CONCURRENCY)
    ui.examples(bundle, image)
