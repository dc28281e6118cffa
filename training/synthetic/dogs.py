"""Synthetic dogs in the Stanford Dogs layout: each "breed" a dog-shaped figure with its own coat colour and pattern."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

# Real Stanford Dogs folder names; each gets a coat colour and pattern of its own.
DOG_BREEDS = [
    ("n02085620-Chihuahua", (210, 170, 110), "solid"),
    ("n02099601-golden_retriever", (220, 165, 60), "stripes"),
    ("n02110185-Siberian_husky", (90, 90, 100), "spots"),
    ("n02111500-Great_Pyrenees", (240, 240, 235), "checks"),
    ("n02106662-German_shepherd", (120, 70, 30), "rings"),
    ("n02088364-beagle", (170, 100, 40), "dots"),
]


def draw_dog(rng: np.random.Generator, color, pattern: str, size: int = 128):
    """A dog figure (body, head, ears, legs, tail) with a coat pattern on a noisy background.

    Returns the RGB image and the dog's box (left, top, right, bottom).
    """
    background = rng.integers(40, 200, size=3)
    noise = rng.normal(0, 18, size=(size, size, 3))
    canvas = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.45, 0.7) * size
    cx = rng.uniform(0.3, 0.7) * size
    cy = rng.uniform(0.4, 0.6) * size
    facing = 1 if rng.random() < 0.5 else -1
    body = [cx - scale / 2, cy - scale / 5, cx + scale / 2, cy + scale / 5]
    head_c = (cx + facing * scale * 0.55, cy - scale * 0.3)
    head_r = scale * 0.18
    fill = tuple(int(c) for c in np.clip(np.array(color) + rng.normal(0, 10, 3), 0, 255))
    dark = tuple(max(0, c - 90) for c in fill)
    for dx in (-0.35, -0.15, 0.2, 0.38):  # legs
        x = cx + dx * scale
        draw.rectangle([x - scale * 0.04, cy, x + scale * 0.04, cy + scale * 0.42], fill=dark)
    draw.line([cx - facing * scale / 2, cy, cx - facing * scale * 0.7, cy - scale * 0.3], fill=dark, width=max(2, int(scale * 0.05)))
    draw.ellipse(body, fill=fill)
    draw.ellipse([head_c[0] - head_r, head_c[1] - head_r, head_c[0] + head_r, head_c[1] + head_r], fill=fill)
    draw.polygon([(head_c[0] - head_r * 0.8, head_c[1] - head_r * 0.5), (head_c[0] - head_r * 0.2, head_c[1] - head_r * 1.6),
                  (head_c[0], head_c[1] - head_r * 0.6)], fill=dark)
    _coat(draw, body, pattern, dark, scale)
    box = (
        int(max(0, min(body[0], head_c[0] - head_r, cx - facing * scale * 0.7))),
        int(max(0, head_c[1] - head_r * 1.6)),
        int(min(size - 1, max(body[2], head_c[0] + head_r, cx - facing * scale * 0.7))),
        int(min(size - 1, cy + scale * 0.42)),
    )
    return image, box


def _coat(draw, body, pattern, ink, scale):
    left, top, right, bottom = body
    step = max(4, int(scale / 7))
    width = max(2, step // 3)
    if pattern == "stripes":
        for x in range(int(left) + step // 2, int(right), step):
            draw.line([x, top + 2, x, bottom - 2], fill=ink, width=width)
    elif pattern == "spots":
        for x in range(int(left) + step, int(right) - step // 2, step * 2):
            draw.ellipse([x - step * 0.7, (top + bottom) / 2 - step * 0.7, x + step * 0.7, (top + bottom) / 2 + step * 0.7], fill=ink)
    elif pattern == "checks":
        for i, x in enumerate(range(int(left) + step, int(right) - step, step)):
            for j, y in enumerate(range(int(top) + 2, int(bottom) - 2, step)):
                if (i + j) % 2 == 0:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=ink)
    elif pattern == "rings":
        cx, cy = (left + right) / 2, (top + bottom) / 2
        for radius in range(step, int((bottom - top) / 2), step):
            draw.ellipse([cx - radius * 2, cy - radius, cx + radius * 2, cy + radius], outline=ink, width=width)
    elif pattern == "dots":
        for x in range(int(left) + step, int(right) - step // 2, step):
            for y in range(int(top) + step // 2, int(bottom) - 2, step):
                draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=ink)


def _voc_xml(folder: str, stem: str, size: int, breed: str, box) -> str:
    left, top, right, bottom = box
    return f"""<annotation>
\t<folder>{escape(folder)}</folder>
\t<filename>{escape(stem)}</filename>
\t<source><database>ImageNet database</database></source>
\t<size><width>{size}</width><height>{size}</height><depth>3</depth></size>
\t<segment>0</segment>
\t<object>
\t\t<name>{escape(breed)}</name>
\t\t<pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>{left}</xmin><ymin>{top}</ymin><xmax>{right}</xmax><ymax>{bottom}</ymax></bndbox>
\t</object>
</annotation>
"""


def _cell(strings):
    cell = np.empty((len(strings), 1), dtype=object)
    for i, text in enumerate(strings):
        cell[i, 0] = np.array([text])
    return cell


def make_stanford_dogs(root, breeds: int = 4, per_breed: int = 30, size: int = 128, lists: str | None = "root",
                       test_fraction: float = 0.3, seed: int = 0) -> Path:
    """Write a Stanford Dogs look-alike: Images/, Annotation/ and, optionally, the .mat lists.

    `lists` is "root" (lists.tar extracted beside Images/), "folder" (a lists/ folder)
    or None (the Kaggle copy). Like the real dataset, one file named .jpg is a PNG
    with an alpha channel.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for index, (folder, color, pattern) in enumerate(DOG_BREEDS[:breeds]):
        wnid = folder.split("-", 1)[0]
        (root / "Images" / folder).mkdir(parents=True, exist_ok=True)
        (root / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
        for k in range(per_breed):
            stem = f"{wnid}_{1000 + k}"
            image, box = draw_dog(rng, color, pattern, size)
            path = root / "Images" / folder / f"{stem}.jpg"
            if index == 0 and k == 0:
                image.convert("RGBA").save(path, format="PNG")  # the real dataset's PNG named .jpg
            else:
                image.save(path, format="JPEG", quality=92)
            (root / "Annotation" / folder / stem).write_text(_voc_xml(wnid, stem, size, folder.split("-", 1)[1], box))
            entry = (f"{folder}/{stem}.jpg", f"{folder}/{stem}", index + 1)
            (test if k < round(per_breed * test_fraction) else train).append(entry)
    if lists:
        target = root if lists == "root" else root / "lists"
        target.mkdir(exist_ok=True)
        for name, entries in (("train_list.mat", train), ("test_list.mat", test)):
            scipy.io.savemat(target / name, {
                "file_list": _cell([e[0] for e in entries]),
                "annotation_list": _cell([e[1] for e in entries]),
                "labels": np.array([[e[2]] for e in entries], dtype=np.uint8),
            })
    return root


def dog_examples(out_dir, count: int = 3, size: int = 256, seed: int = 99) -> list[Path]:
    """A few fresh pictures from the same generator, for a demo tab's examples."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for folder, color, pattern in DOG_BREEDS[:count]:
        image, _ = draw_dog(rng, color, pattern, size)
        path = out_dir / f"{folder.split('-', 1)[1].lower()}.jpg"
        image.save(path, quality=92)
        paths.append(path)
    return paths
