"""Age & gender: find the faces, measure each one's tilt, straighten it, then gender and age.

Each step is shown: the picture with numbered face boxes and eye lines, each straightened crop,
both tilt estimates (the rotation network's and the eyes' line), the gender probabilities, the age
with the model's error band (held-out RMSE), and every face as structured data (`faces`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field

from core import faces, flags, interpret, schema, scores
from core.bundle import Bundle
from core.errors import InputError
from core.images import load_image, upright_size

NAME = "age_gender"
TITLE = "Age & gender"
API_NAME = "age_gender"
DESCRIPTION = ("Upload a photo of people, take one with the webcam or paste one: the model finds the faces (up to "
               "four), measures how far each head is tilted, straightens it, then estimates gender and age.")
TRAIN_COMMAND = "python -m training.age_gender --data DIR --out models/age_gender"
# How predict.py reads this task: its kind of predictor and the options that apply.
KIND = "faces"
PREDICT_OPTIONS = ("tilt_by",)
# The model training.demo builds when the tab has none: the recipe module whose build_demo makes it, and
# about how long that takes on 2 CPU cores with another build beside it.
DEMO_RECIPE, DEMO_SECONDS = "training.age_gender", 50


class Metadata(schema.TaskMetadata):
    """What this tab reads of task.json: a bundle that lacks it is refused at start, with a notice."""

    class Rotation(schema.Schema):
        loss: Literal["bins", "sincos"]
        bin_centres: list[schema.Number] = Field([], max_length=3600)

    class Age(schema.Schema):
        rmse: Annotated[schema.Number, Field(ge=0)] | None  # null: never measured on labelled faces
        range: tuple[schema.Number, schema.Number] = (0, 100)

    class Face(schema.Schema):
        detector: str = ""
        crop_scale: Annotated[schema.Number, Field(gt=0, le=10)]
        chip: Literal["box", "dlib"] = "box"
        chip_padding: Annotated[schema.Number, Field(ge=0, le=2)] = 0.2
        max_faces: Annotated[schema.StrictInt, Field(ge=1, le=64)] = faces.MAX_FACES
        min_confidence: schema.Probability = faces.MIN_CONFIDENCE
        min_size: Annotated[schema.Number, Field(ge=0, le=4096)] = faces.MIN_FACE_SIZE
        search_angles: list[Annotated[schema.Number, Field(ge=-180, le=180)]] = Field([0], max_length=16)
        tilt: dict = {}

    required_networks = ("rotation", "gender_age")
    rotation: Rotation
    age: Age
    face: Face


METADATA = Metadata


def headline(metadata: dict) -> list:
    """The held-out figures shown under the model, next to their baselines (core.scores)."""
    metric = scores.metric
    # The pretrained bundle's tilt figures come from drawn faces, not from photos: the label says so.
    drawn = (metadata.get("metrics", {}).get("tilt") or {}).get("measured_on", "").split(" (")[0]
    on = f" on {drawn}" if drawn else ""
    rows = [("gender accuracy", metric(metadata, "gender_accuracy"),
             (metric(metadata, "baselines.gender_accuracy_majority"), "majority gender")),
            ("age error, mean (years)", metric(metadata, "age_mae"),
             (metric(metadata, "baselines.age_mae_train_mean"), "the training mean age")),
            (f"tilt error{on}, rotation network (degrees)", metric(metadata, "rotation_mae_degrees"),
             (metric(metadata, "baselines.rotation_mae_best_constant"), "best constant guess")),
            (f"tilt error{on}, eye line (degrees)", metric(metadata, "tilt.eyes_mae"), None)]
    return [row for row in rows if row[1] is not None]


NO_FACE = "No face found: no gender or age is given."
BOX_COLOURS = ["#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#00c7be"]
SHOWN_SIDE = 160  # straightened crops are shown at this size
TILT_SOURCES = {"eyes": "the line through the eyes", "network": "the rotation network"}


@dataclass
class FaceResult:
    face: faces.Face
    centre: tuple  # of the square the gender and age network read, in the picture's pixels
    side: float  # its side, in pixels
    turn: float  # how far that square is turned (degrees counter-clockwise): it was turned back by this
    tilt_network: float  # degrees counter-clockwise
    tilt_eyes: float | None  # None without eyes
    tilt_by: str  # the estimate the face was straightened by: "eyes" or "network"
    straightened: Image.Image
    gender: dict  # {label: probability}
    age: float

    @property
    def tilt(self) -> float:
        return self.tilt_eyes if self.tilt_by == "eyes" else self.tilt_network


def face_settings(bundle: Bundle) -> dict:
    """The bundle's `face` block with a default for every key, so bundles made before a key existed
    still load. Search settings written for another detector (the LBP cascade's seven angles) are
    not MTCNN's: those fall back to the defaults. `chip` is how the gender and age network's crop is
    laid out: "box" (the detector's box times crop_scale, around its centre: what our recipe trains
    on) or "dlib" (dlib's face chip from the eyes and nose, with chip_padding: the ported networks')."""
    face = bundle.metadata.get("face", {})
    ours = face.get("detector") == faces.DETECTOR
    return {
        "crop_scale": face.get("crop_scale", 1.25),
        "chip": face.get("chip", "box"),
        "chip_padding": face.get("chip_padding", 0.2),
        "max_faces": face.get("max_faces", faces.MAX_FACES),
        "min_confidence": face.get("min_confidence", faces.MIN_CONFIDENCE),
        "min_size": face.get("min_size", faces.MIN_FACE_SIZE),
        "search_angles": tuple(face["search_angles"]) if ours and "search_angles" in face else faces.SEARCH_ANGLES,
        "tilt": face.get("tilt") or {"network_mae": bundle.metadata.get("metrics", {}).get("rotation_mae_degrees")},
    }


def default_tilt(bundle: Bundle) -> str:
    """Which tilt straightens a face unless the user picks: the recipe's choice (the smaller held-out
    error); the network's while the eyes' error is unmeasured."""
    tilt = face_settings(bundle)["tilt"]
    if tilt.get("default") in TILT_SOURCES:
        return tilt["default"]
    if tilt.get("eyes_mae") is None:
        return "network"
    return "eyes" if tilt["eyes_mae"] <= (tilt.get("network_mae") or math.inf) else "network"


def analyse(bundle: Bundle, image: Image.Image, tilt_by: str | None = None) -> list[FaceResult]:
    """Every face found (at most the bundle's max_faces), straightened and read; none when no face is
    found (then nothing is said of gender or age: a picture is no face).

    Each network runs once, on all faces in one batch: the rotation network on the faces as found,
    then the gender/age network on the faces straightened by `tilt_by` ("eyes" where a face has
    them, else "network"; default: the bundle's more accurate one)."""
    settings = face_settings(bundle)
    tilt_by = tilt_by if tilt_by in TILT_SOURCES else default_tilt(bundle)
    found = faces.detect_faces(image, max_faces=settings["max_faces"], min_confidence=settings["min_confidence"],
                               min_size=settings["min_size"], search_angles=settings["search_angles"])
    if not found:
        return []
    size = bundle.input_size[0]

    def crops(regions, angles, out_size=size):
        return [faces.rotated_crop(image, centre, side, -angle, out_size) for (centre, side), angle in zip(regions, angles)]

    def batch(pictures):
        return np.stack([np.asarray(picture, np.float32) for picture in pictures])

    # 1. How far is each face turned? The network's one look at the face as found (the estimate whose
    # held-out error the recipe records), and the eyes' line where the detector found eyes.
    boxes = [(f.centre, f.side * settings["crop_scale"]) for f in found]
    network = faces.decode_rotation(bundle.network("rotation")(batch(crops(boxes, [0.0] * len(found)))),
                                    bundle.metadata["rotation"])
    eyes = [face.eye_tilt for face in found]
    used = [tilt_by if tilt_by == "network" or e is not None else "network" for e in eyes]
    angles = [float(e) if by == "eyes" else float(n) for n, e, by in zip(network, eyes, used)]
    # 2. Turn the picture back around each face, crop again (as the gender and age network was
    # trained to see a face), and read gender and age.
    regions = boxes
    if settings["chip"] == "dlib":
        regions = [faces.chip_region(face, settings["chip_padding"], angle)[:2] if face.eyes and face.nose else box
                   for face, box, angle in zip(found, boxes, angles)]
    outputs = bundle.network("gender_age")(batch(crops(regions, angles)))
    return [FaceResult(face, centre, side, angle, float(network[i]), eyes[i], used[i],
                       crops([(centre, side)], [angle], SHOWN_SIDE)[0],
                       {label: float(p) for label, p in zip(bundle.labels, outputs["gender"][i])},
                       float(outputs["age"][i].reshape(-1)[0]))
            for i, ((face, (centre, side)), angle) in enumerate(zip(zip(found, regions), angles))]


def clipped_age(bundle: Bundle, age: float) -> float:
    low, high = bundle.metadata["age"].get("range", [0, 100])
    return float(np.clip(age, low, high))


def age_text(bundle: Bundle, age: float) -> str:
    """'34 ± 6 years': the error band is the held-out RMSE stored in the bundle ('34 years' when the
    bundle's network was never measured on a labelled set, as the ported networks)."""
    rmse = bundle.metadata["age"].get("rmse")
    return f"{clipped_age(bundle, age):.0f}" + ("" if rmse is None else f" ± {rmse:.0f}") + " years"


def turn_text(angle: float) -> str:
    if abs(angle) < 0.5:
        return "upright"
    return f"tilted {abs(angle):.0f}° " + ("counter-clockwise" if angle > 0 else "clockwise")


def tilt_text(result: FaceResult) -> str:
    """Both estimates, and which one straightened the face: 'eyes +18.0°, network +15.2°; straightened by the eyes'."""
    parts = ([] if result.tilt_eyes is None else [f"eyes {result.tilt_eyes:+.1f}°"]) + [f"network {result.tilt_network:+.1f}°"]
    by = "the eyes" if result.tilt_by == "eyes" else "the network" + (" (no eyes found)" if result.tilt_eyes is None else "")
    return f"{', '.join(parts)}; straightened by {by}"


def describe(bundle: Bundle, number: int, result: FaceResult) -> str:
    gender, probability = max(result.gender.items(), key=lambda item: item[1])
    return (f"**Face {number}**: {gender} ({probability:.0%}), {age_text(bundle, result.age)}, "
            f"{turn_text(result.tilt)} ({tilt_text(result)})")


def face_record(bundle: Bundle, result: FaceResult, scale: tuple[float, float]) -> dict:
    """One face for the `faces` JSON; the box is in the uploaded picture's pixels (upright)."""
    left, top, width, height = result.face.box
    sx, sy = scale
    return {
        "box": [round(left * sx), round(top * sy), round(width * sx), round(height * sy)],
        "confidence": round(result.face.confidence, 4),
        "tilt_network": round(result.tilt_network, 1),
        "tilt_eyes": None if result.tilt_eyes is None else round(result.tilt_eyes, 1),
        "tilt_used": round(result.tilt, 1),
        "tilt_by": result.tilt_by,
        "gender": {label: round(p, 4) for label, p in result.gender.items()},
        "age": round(clipped_age(bundle, result.age), 1),
        "age_rmse": age_rmse(bundle),
    }


def age_rmse(bundle: Bundle) -> float | None:
    """The held-out RMSE of the age, to a tenth of a year; None when it was never measured."""
    rmse = bundle.metadata["age"].get("rmse")
    return None if rmse is None else round(float(rmse), 1)


def annotate(image: Image.Image, results: list[FaceResult]) -> Image.Image:
    """The picture with each face's box and number, its eye line, and the tilted square the
    network read."""
    shown = image.copy()
    draw = ImageDraw.Draw(shown)
    width = max(2, round(max(image.size) / 200))
    for number, result in enumerate(results, 1):
        colour = BOX_COLOURS[(number - 1) % len(BOX_COLOURS)]
        half = result.side / 2
        corners = [(result.centre[0] + dx, result.centre[1] + dy) for dx, dy in
                   ((-half, -half), (half, -half), (half, half), (-half, half))]
        # The crop that comes out upright: the square turned by as much as it was turned back.
        turned = [faces.rotate_point(p, result.turn, result.centre) for p in corners]
        draw.line(turned + turned[:1], fill=colour, width=max(1, width // 2))
        left, top, w, h = result.face.box
        draw.rectangle((left, top, left + w, top + h), outline=colour, width=width)
        draw.text((left + width + 2, top + width), str(number), fill=colour, font_size=max(12, int(h / 4)))
        if result.face.eyes is not None:
            draw.line(result.face.eyes, fill=colour, width=max(1, width // 2))
            for x, y in result.face.eyes:
                draw.ellipse((x - width, y - width, x + width, y + width), outline=colour, width=max(1, width // 2))
    return shown


def predict(bundle: Bundle, image, tilt_by: str | None = None):
    """Photo (path, bytes or PIL) -> (annotated picture, [(straightened crop, caption)], face 1's
    tilts as text, face 1's {gender: probability}, face 1's age text, a Markdown summary of every
    face, and every face as a list of dicts, most confident first). Without a face: the picture, the
    no-face notice, and nothing else (no gender, no age)."""
    picture = load_image(image)
    results = analyse(bundle, picture, tilt_by)
    if not results:
        return picture, [], "", None, "", f"⚠️ {NO_FACE}", []
    lines = []
    if len(results) > 1:
        lines.append(f"{len(results)} faces found; the gender, age and tilt fields show face 1 (most certain).")
    lines += [describe(bundle, number, result) for number, result in enumerate(results, 1)]
    # Short captions: a gallery thumbnail holds about 15 characters.
    gallery = [(r.straightened, f"Face {n}: {r.tilt:+.0f}°") for n, r in enumerate(results, 1)]
    upload = upright_size(picture) or picture.size
    scale = (upload[0] / picture.width, upload[1] / picture.height)
    first = results[0]
    return (annotate(picture, results), gallery, tilt_text(first), first.gender, age_text(bundle, first.age),
            "\n\n".join(lines), [face_record(bundle, r, scale) for r in results])


def explain(bundle: Bundle, image, face: int = 1, tilt_by: str | None = None) -> Image.Image:
    """Face `face` (1: the most certain) straightened as the network read it, with the Grad-CAM map
    of its gender (the more likely one) over it."""
    picture = load_image(image)
    results = analyse(bundle, picture, tilt_by)
    face = 1 if face is None else int(face)
    if not 1 <= face <= len(results):
        found_text = f"{len(results)} face{'s' if len(results) > 1 else ''} found" if results else "no face found"
        raise InputError(f"There is no face {face}: {found_text}." +
                         (f" Pick a face from 1 to {len(results)}." if results else ""))
    result = results[face - 1]
    size = bundle.input_size[0]
    crop = faces.rotated_crop(picture, result.centre, result.side, -result.turn, size)
    heatmap = interpret.gradcam(bundle.network("gender_age"), np.asarray(crop, np.float32), None, output="gender")
    # Shown at least as large as the crops above, so the map is readable at a small input size.
    return interpret.overlay(crop.resize((max(size, SHOWN_SIDE),) * 2, Image.Resampling.BICUBIC), heatmap)


def flag(flagging: flags.Flagging, image, answer, gender: str | None = None, age: float | str | None = None,
         comment: str = "") -> str:
    """The answer for face 1 is wrong: its right gender, and its age if the user knows it."""
    gender = flags.label_correction(flagging.labels, gender)
    if gender is None:
        raise flags.FlagError("Pick face 1's right gender (the age is optional).")
    correction = {"gender": gender, "age": flags.age_correction(age)}
    return flags.confirmation(flags.save(flagging, image, answer, correction, comment))


def tab(bundle: Bundle, ui, flagging=None):
    import gradio as gr

    tilt = face_settings(bundle)["tilt"]

    def choice(source):
        mae = tilt.get(f"{source}_mae")
        return f"{TILT_SOURCES[source].capitalize()} (held-out error " + (
            f"{mae:.1f}°)" if mae is not None else "not measured)")

    with gr.Row():
        image = ui.ImageUpload(type="filepath", sources=["upload", "webcam", "clipboard"], label="Photo of people")
        # JPEG: the annotated photo is a photo, and encoding it as PNG cost 50-100 ms of each request.
        annotated = gr.Image(label="Faces found (numbered; eye line, and the square the network read)", type="pil",
                             interactive=False, format="jpeg")
    tilt_by = gr.Radio([(choice(source), source) for source in TILT_SOURCES], value=default_tilt(bundle),
                       label="Straighten each face by",
                       info="Both tilts are shown; the default is the one with the smaller held-out error.")
    button = gr.Button("Estimate gender and age", variant="primary")
    summary = gr.Markdown(label="Every face")
    with gr.Row():
        # fit_columns=False: a single face would otherwise be stretched to the gallery's width and
        # shown cut to a strip (the eyes only). JPEG: a face crop is a photo (PNG: 4 ms a request).
        crops = gr.Gallery(label="Straightened faces", columns=4, fit_columns=False, height=260,
                           object_fit="contain", format="jpeg", scale=2)
        with gr.Column(scale=1):
            angle = gr.Textbox(label="Face 1: tilt (degrees, counter-clockwise)", interactive=False)
            age = gr.Textbox(label="Face 1: age (± held-out RMSE)", interactive=False)
            gender = gr.Label(num_top_classes=len(bundle.labels), label="Face 1: gender")
    records = gr.JSON(label="faces")
    handler = ui.guarded(predict, bundle)
    outputs = [annotated, crops, angle, gender, age, summary, records]
    button.click(handler, inputs=[image, tilt_by], outputs=outputs, api_name=API_NAME,
                 **ui.SHARED)

    def redo(picture, by):
        # Choosing the tilt before anything was uploaded changes nothing (and raises no error).
        return (gr.skip(),) * len(outputs) if picture is None else handler(picture, by)

    tilt_by.change(redo, inputs=[image, tilt_by], outputs=outputs, api_visibility="private",
                   **ui.SHARED)

    with gr.Row():
        with gr.Column(scale=1):
            face = gr.Number(1, precision=0, minimum=1, maximum=face_settings(bundle)["max_faces"],
                             label="Face to interpret", info="Its gender: where the network looked.")
            heatmap = ui.interpret_controls(bundle, explain, f"{API_NAME}_interpret", [image, face, tilt_by],
                                            label="The straightened face, where the gender came from")
        with gr.Column(scale=2):
            confirmation, corrections = ui.flag_controls(flagging, flag, f"{API_NAME}_flag", image, records, [
                lambda: gr.Dropdown(bundle.labels, value=None, label="Face 1: the right gender"),
                # A Textbox: gr.Number sends 0 when left empty, which would read as "a newborn".
                lambda: gr.Textbox(label="Face 1: the right age (optional)", placeholder="years", max_lines=1)])
    ui.reset_on_change([image, records], [heatmap, confirmation, *corrections])
    ui.examples(bundle, image)
