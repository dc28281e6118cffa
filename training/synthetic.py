"""Synthetic datasets in the real layouts, for the tests and the demo models.

Each generator writes files exactly where and how the real dataset has them,
so the real readers are exercised; the pictures make the task visible (each
dog "breed" is a dog-shaped figure with its own coat colour and pattern).
"""

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


# --- multi-label: each label a visible motif ---------------------------------------------

MOTIFS = [  # (shape, colour), one per label
    ("circle", (30, 90, 230)), ("square", (240, 200, 30)), ("triangle", (230, 60, 40)), ("ring", (40, 170, 60)),
    ("cross", (150, 40, 200)), ("diamond", (250, 130, 20)), ("bar", (20, 200, 210)), ("star", (240, 80, 160)),
]


def draw_motifs(motif_ids, rng: np.random.Generator, size=(128, 128)) -> Image.Image:
    """A noisy background with one motif per label, each in its own quadrant-ish place."""
    width, height = size
    background = rng.integers(60, 190, size=3)
    canvas = np.clip(background + rng.normal(0, 15, size=(height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    cells = rng.permutation(4)
    for cell, motif in zip(cells, motif_ids):
        shape, colour = MOTIFS[motif % len(MOTIFS)]
        r = min(width, height) * rng.uniform(0.15, 0.2)
        cx = (0.25 + 0.5 * (cell % 2)) * width + rng.uniform(-0.06, 0.06) * width
        cy = (0.25 + 0.5 * (cell // 2)) * height + rng.uniform(-0.06, 0.06) * height
        box = [cx - r, cy - r, cx + r, cy + r]
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        elif shape == "ring":
            draw.ellipse(box, outline=colour, width=max(3, int(r / 3)))
        elif shape == "cross":
            draw.rectangle([cx - r, cy - r / 3, cx + r, cy + r / 3], fill=colour)
            draw.rectangle([cx - r / 3, cy - r, cx + r / 3, cy + r], fill=colour)
        elif shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
        elif shape == "bar":
            draw.rectangle([cx - r, cy - r / 4, cx + r, cy + r / 4], fill=colour)
        elif shape == "star":
            points = [(cx + (r if k % 2 == 0 else r / 2.5) * np.cos(np.pi * k / 5 - np.pi / 2),
                       cy + (r if k % 2 == 0 else r / 2.5) * np.sin(np.pi * k / 5 - np.pi / 2)) for k in range(10)]
            draw.polygon(points, fill=colour)
    return image


def _label_sets(rng, count: int, num_labels: int, most: int = 3):
    """Random label sets of 1..most labels, the first label cycling so every label is common."""
    sets = []
    for i in range(count):
        first = i % num_labels
        others = rng.choice([j for j in range(num_labels) if j != first], size=rng.integers(0, most), replace=False)
        sets.append([first, *others.tolist()])
    return sets


HASHTAGS = ["sea", "food", "sunset", "tree", "love", "beach", "city", "flower"]


def make_harrison(root, count: int = 160, size: int = 128, tags=HASHTAGS, extra_vocab=("instagood", "photo"),
                  seed: int = 0) -> Path:
    """Write a HARRISON look-alike: data_list.txt, tag_list.txt (trailing spaces, as published),
    vocab_index.txt (tag and index, padded with spaces) and instagram_dataset/<class>/image_<n>.jpg."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths, tag_lines = [], []
    for n, label_set in enumerate(_label_sets(rng, count, len(tags))):
        relative = f"instagram_dataset/{tags[label_set[0]]}/image_{n}.jpg"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        draw_motifs(label_set, rng, (size, size)).save(root / relative, quality=92)
        paths.append(relative)
        tag_lines.append("".join(f"{tags[j]} " for j in label_set))
    (root / "data_list.txt").write_text("\n".join(paths) + "\n")
    (root / "tag_list.txt").write_text("\n".join(tag_lines) + "\n")
    vocab = [*tags, *extra_vocab]
    (root / "vocab_index.txt").write_text("".join(f"{tag:<22}{i}\n" for i, tag in enumerate(vocab)))
    return root


GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def make_movie_posters(root, count: int = 160, size=(100, 150), genres=GENRES, seed: int = 0) -> Path:
    """Write a movie-poster look-alike: train.csv (Id, Genre as list text, one 0/1 column per
    genre) and Images/<Id>.jpg portrait posters."""
    import csv

    root = Path(root)
    (root / "Images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Genre", *genres])
        for n, label_set in enumerate(_label_sets(rng, count, len(genres))):
            movie_id = f"tt{1000000 + n:07d}"
            draw_motifs(label_set, rng, size).save(root / "Images" / f"{movie_id}.jpg", quality=92)
            names = [genres[j] for j in sorted(label_set)]
            writer.writerow([movie_id, str(names), *[int(j in label_set) for j in range(len(genres))]])
    return root


def motif_examples(out_dir, labels: list[str], sets, size=(256, 256), seed: int = 7) -> list[Path]:
    """Pictures from the motif generator for a demo tab's examples."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for label_set in sets:
        path = out_dir / ("_".join(labels[j].lower() for j in label_set) + ".jpg")
        draw_motifs(label_set, rng, size).save(path, quality=92)
        paths.append(path)
    return paths


# --- Open Images crops: hamburgers are round and stacked, sandwiches triangular --------------

def draw_food(kind: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A cropped-box picture: a hamburger (stacked round layers) or a sandwich (a bread triangle
    with a filling stripe), with random colours jittered around food colours."""
    background = rng.integers(150, 250, size=3)
    canvas = np.clip(background + rng.normal(0, 12, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)

    def jitter(colour):
        return tuple(int(c) for c in np.clip(np.array(colour) + rng.normal(0, 15, 3), 0, 255))

    m = size * rng.uniform(0.08, 0.16)
    if kind == "hamburger":
        left, right = m, size - m
        layers = [("bun", 0.18, (200, 140, 60)), ("lettuce", 0.07, (80, 170, 60)), ("patty", 0.14, (90, 50, 30)),
                  ("cheese", 0.05, (245, 200, 40)), ("bun", 0.14, (200, 140, 60))]
        y = size * rng.uniform(0.18, 0.28)
        for index, (_, height, colour) in enumerate(layers):
            h = height * size
            box = [left, y, right, y + h]
            if index == 0:
                draw.pieslice([left, y, right, y + 2 * h], 180, 360, fill=jitter(colour))
            else:
                draw.rounded_rectangle(box, radius=h / 2, fill=jitter(colour))
            y += h
    else:
        top, bottom = size * rng.uniform(0.12, 0.22), size * rng.uniform(0.78, 0.88)
        bread = jitter((235, 210, 160))
        draw.polygon([(m, bottom), (size - m, bottom), (m, top)], fill=bread)
        crust = jitter((170, 110, 50))
        draw.line([(m, top), (size - m, bottom)], fill=crust, width=max(2, size // 30))
        filling = jitter((220, 60, 60))
        y = bottom - (bottom - top) * 0.3
        draw.line([(m, y), (m + (size - 2 * m) * 0.7, y)], fill=filling, width=max(3, size // 16))
    return image


def make_food_crops(root, per_class: int = 60, size: int = 96, seed: int = 0,
                    classes=("hamburger", "sandwich")) -> Path:
    """An `images_cropped/<class>/` folder as training.open_images writes it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for kind in classes:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            draw_food(kind, rng, size).save(root / kind / f"{kind}_{n:04d}.jpg", quality=92)
    return root
