"""Drawn faces in the IMDB-WIKI and UTKFace layouts, for the tests and the demo model.

Each face carries the three things the networks learn, visibly:
- tilt: the face is drawn upright and the whole picture turned by a known angle; hair on top,
  eyes above the mouth, so there is one upright way at any angle up to +-180;
- gender: "Female" faces have long hair falling beside the face to the chin and no beard,
  "Male" faces short hair and a beard shadow on the jaw;
- age: the hair greys from dark to white between 20 and 80 years, and forehead and
  eye wrinkles appear and darken with age (about one line per 12 years).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw, ImageFilter

GENDERS = ("Female", "Male")  # label order of the bundle
HAIR_COLOURS = [(40, 28, 20), (90, 60, 30), (20, 20, 20), (150, 110, 60)]
SKIN_TONES = [(235, 200, 170), (205, 160, 120), (160, 110, 80), (110, 75, 55)]


def draw_face(rng: np.random.Generator, gender: str, age: float, size: int = 128, tilt: float = 0.0,
              face_fraction: float = 0.5):
    """A face centred in a size x size picture, turned `tilt` degrees counter-clockwise.

    The face's width is `face_fraction` of the picture. Returns the RGB image; the face centre is
    the picture centre."""
    # Draw larger, turn around the centre, crop: the corners are drawn background, not padding.
    big = int(math.ceil(size * math.sqrt(2))) + 4
    background = np.array(rng.integers(60, 200, size=3), dtype=np.float64)
    gradient = np.linspace(-25, 25, big)[:, None, None] * rng.choice([-1, 1])
    canvas = np.clip(background + gradient + rng.normal(0, 8, size=(big, big, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    c = big / 2
    w = face_fraction * size * rng.uniform(0.92, 1.08)
    h = w * 1.3
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + rng.normal(0, 6, 3)
    skin_t = _colour(skin)
    grey = float(np.clip((age - 20) / 60, 0, 1))
    hair = _colour(np.array(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]) * (1 - grey) + np.array([225, 225, 225]) * grey)
    top, bottom, left, right = c - h / 2, c + h / 2, c - w / 2, c + w / 2

    if gender == "Female":  # long hair behind the face, down past the chin
        draw.rounded_rectangle([left - w * 0.18, top - h * 0.12, right + w * 0.18, bottom + h * 0.25],
                               radius=w * 0.45, fill=hair)
    # neck and shoulders
    draw.rectangle([c - w * 0.2, bottom - h * 0.1, c + w * 0.2, bottom + h * 0.35], fill=_colour(skin * 0.9))
    draw.ellipse([c - w * 1.1, bottom + h * 0.22, c + w * 1.1, bottom + h * 1.2], fill=_colour(rng.integers(30, 220, 3)))
    draw.ellipse([left, top, right, bottom], fill=skin_t)
    if gender == "Male":  # short hair: a cap on the top of the head; beard shadow on the jaw
        draw.chord([left - w * 0.03, top - h * 0.06, right + w * 0.03, top + h * 0.55], 180, 360, fill=hair)
        beard = _colour(skin * 0.55 + np.array(hair) * 0.2)
        draw.chord([left + w * 0.06, c - h * 0.05, right - w * 0.06, bottom], 20, 160, fill=beard)
        draw.ellipse([c - w * 0.22, c + h * 0.18, c + w * 0.22, c + h * 0.36], fill=skin_t)
    else:
        draw.chord([left - w * 0.02, top - h * 0.04, right + w * 0.02, top + h * 0.4], 180, 360, fill=hair)

    eye_y = c - h * 0.06
    for side in (-1, 1):
        ex = c + side * w * 0.2
        # A shaded eye socket: the dark band across the eyes is what face detectors key on.
        draw.ellipse([ex - w * 0.15, eye_y - h * 0.08, ex + w * 0.15, eye_y + h * 0.06], fill=_colour(skin * 0.6))
        draw.ellipse([ex - w * 0.09, eye_y - h * 0.035, ex + w * 0.09, eye_y + h * 0.035], fill=(200, 195, 190))
        draw.ellipse([ex - w * 0.045, eye_y - h * 0.035, ex + w * 0.045, eye_y + h * 0.035], fill=(25, 20, 20))
        brow = eye_y - h * 0.09
        draw.line([ex - w * 0.13, brow + side * 0 + h * 0.01, ex + w * 0.13, brow - h * 0.01], fill=_colour(np.array(hair) * 0.8),
                  width=max(2, int(w * 0.05)))
    draw.polygon([(c, c - h * 0.02), (c - w * 0.07, c + h * 0.13), (c + w * 0.07, c + h * 0.13)], fill=_colour(skin * 0.75))
    draw.chord([c - w * 0.17, c + h * 0.17, c + w * 0.17, c + h * 0.31], 0, 180, fill=(150, 50, 55))

    lines = int(np.clip((age - 15) / 12, 0, 6))
    ink = _colour(skin * (0.85 - 0.3 * grey))
    for k in range(lines):  # forehead lines, then crow's feet
        y = top + h * (0.3 - 0.045 * k) if k < 3 else eye_y
        if k < 3:
            draw.arc([c - w * 0.28, y - h * 0.03, c + w * 0.28, y + h * 0.03], 200, 340, fill=ink, width=max(1, int(w * 0.025)))
        else:
            dx = w * (0.34 + 0.03 * (k - 3))
            for side in (-1, 1):
                draw.line([c + side * dx, eye_y - h * 0.03, c + side * (dx + w * 0.06), eye_y + h * 0.03], fill=ink,
                          width=max(1, int(w * 0.02)))

    image = image.filter(ImageFilter.GaussianBlur(0.6))
    if tilt:
        image = image.rotate(tilt, resample=Image.Resampling.BICUBIC, center=(c, c))
    offset = (big - size) // 2
    return image.crop((offset, offset, offset + size, offset + size))


def _colour(values) -> tuple:
    return tuple(int(v) for v in np.clip(np.asarray(values, dtype=np.float64), 0, 255))


def face_scene(rng: np.random.Generator, gender: str, age: float, tilt: float, size: int = 256,
               face_fraction: float = 0.3):
    """A photo-like picture with one tilted face, not centred: (image, face centre (x, y))."""
    face_size = int(size * 0.6)
    face = draw_face(rng, gender, age, face_size, tilt, face_fraction=face_fraction / 0.6)
    background = np.clip(rng.integers(70, 190, 3) + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
    scene = Image.fromarray(background, "RGB")
    x, y = (int(v) for v in rng.integers(0, size - face_size, 2))
    mask = Image.new("L", (face_size, face_size), 0)
    ImageDraw.Draw(mask).ellipse([0, 0, face_size - 1, face_size - 1], fill=255)
    scene.paste(face, (x, y), mask.filter(ImageFilter.GaussianBlur(4)))
    return scene, (x + face_size / 2, y + face_size / 2)


def random_people(rng: np.random.Generator, count: int):
    """(gender label, age) pairs: genders balanced, ages 1..95."""
    genders = [GENDERS[i % 2] for i in range(count)]
    ages = rng.integers(1, 96, size=count)
    return list(zip(genders, ages.tolist()))


# --- IMDB-WIKI ----------------------------------------------------------------------------

def matlab_datenum(day: date) -> float:
    """MATLAB serial date number: days since year 0 (1 January of year 1 is 367)."""
    return float(day.toordinal() + 366)


def write_imdb_wiki_mat(path: Path, rows: list[dict], name: str = "wiki") -> Path:
    """A .mat file in IMDB-WIKI's structure: one struct `name` whose fields are 1 x N arrays
    (cells for paths, names and face locations).

    Each row: dob (MATLAB serial date), photo_taken (year), full_path, gender (1.0 male, 0.0 female,
    nan), face_score (-inf when no face was found), second_face_score (nan when one face)."""
    n = len(rows)

    def cells(values):
        array = np.empty((1, n), dtype=object)
        for i, value in enumerate(values):
            array[0, i] = value
        return array

    struct = {
        "dob": np.array([[r["dob"] for r in rows]], dtype=np.float64),
        "photo_taken": np.array([[r["photo_taken"] for r in rows]], dtype=np.float64),
        "full_path": cells([np.array([r["full_path"]]) for r in rows]),
        "gender": np.array([[r["gender"] for r in rows]], dtype=np.float64),
        "name": cells([np.array([r.get("name", "Somebody")]) for r in rows]),
        "face_location": cells([np.array([[10.0, 10.0, 90.0, 90.0]]) for _ in rows]),
        "face_score": np.array([[r["face_score"] for r in rows]], dtype=np.float64),
        "second_face_score": np.array([[r["second_face_score"] for r in rows]], dtype=np.float64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {name: struct})
    return path


def make_imdb_wiki(root: Path, count: int = 200, size: int = 96, seed: int = 0, name: str = "wiki") -> Path:
    """`<root>/<name>_crop/<name>.mat` and `<name>_crop/NN/<id>.jpg`: upright drawn face crops with a
    known age and gender, as IMDB-WIKI distributes them (all rows valid; tests add bad ones)."""
    rng = np.random.default_rng(seed)
    folder = root / f"{name}_crop"
    rows = []
    for index, (gender, age) in enumerate(random_people(rng, count)):
        taken = int(rng.integers(1990, 2015))
        born = date(taken - age, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
        relative = f"{index % 100:02d}/{1000 + index}_{born.isoformat()}_{taken}.jpg"
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tilt = rng.normal(0, 2)  # dataset crops are upright, give or take a little
        draw_face(rng, gender, age, size, tilt).save(target, quality=92)
        rows.append({"dob": matlab_datenum(born), "photo_taken": taken, "full_path": relative,
                     "gender": 1.0 if gender == "Male" else 0.0, "face_score": float(rng.uniform(2, 6)),
                     "second_face_score": float("nan")})
    write_imdb_wiki_mat(folder / f"{name}.mat", rows, name)
    return root


# --- UTKFace ------------------------------------------------------------------------------

def make_utkface(root: Path, count: int = 200, size: int = 96, seed: int = 1) -> Path:
    """`<root>/UTKFace/[age]_[gender]_[race]_[date&time].jpg.chip.jpg` (gender 0 = male, 1 = female)."""
    rng = np.random.default_rng(seed)
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    for index, (gender, age) in enumerate(random_people(rng, count)):
        code = 0 if gender == "Male" else 1
        stamp = 20170116000000000 + index * 1_000_003
        draw_face(rng, gender, age, size, rng.normal(0, 2)).save(
            folder / f"{age}_{code}_{int(rng.integers(0, 5))}_{stamp}.jpg.chip.jpg", quality=92)
    return root
