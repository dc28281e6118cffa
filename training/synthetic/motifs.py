"""Multi-label pictures, each label a visible motif, in the HARRISON and movie-poster layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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
