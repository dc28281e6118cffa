"""Pictures whose class is decided in one known place, in the Stanford Dogs layout: where a network
looks can be checked against where the answer is (Grad-CAM tests).

Each class has a quadrant and a colour: class 0 a red square in the top-left quadrant, class 1 a
blue square in the bottom-right one. Every picture also has a grey square as bright as the others
in one of the two remaining quadrants (a distractor, the same for both classes), on noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# (Stanford Dogs folder, quadrant (column, row), colour) per class.
CLASSES = [("n00000001-top_left_red", (0, 0), (230, 40, 40)), ("n00000002-bottom_right_blue", (1, 1), (40, 60, 230))]
DISTRACTOR_QUADRANTS = [(1, 0), (0, 1)]
DISTRACTOR = (200, 200, 200)


def draw_region_picture(rng: np.random.Generator, label: int, size: int = 64) -> tuple[Image.Image, tuple]:
    """One picture of class `label`, and the quadrant of its distractor."""
    canvas = np.clip(rng.normal(110, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    _, quadrant, colour = CLASSES[label]
    distractor = DISTRACTOR_QUADRANTS[rng.integers(2)]
    for (column, row), fill in ((quadrant, colour), (distractor, DISTRACTOR)):
        side = rng.uniform(0.18, 0.26) * size
        left = (column + rng.uniform(0.1, 0.9 - side / (size / 2))) * size / 2
        top = (row + rng.uniform(0.1, 0.9 - side / (size / 2))) * size / 2
        draw.rectangle([left, top, left + side, top + side], fill=fill)
    return image, distractor


def quadrant_mask(quadrant: tuple[int, int], size: int) -> np.ndarray:
    """(size, size) booleans: a quadrant, (column, row) as in CLASSES."""
    (column, row), half = quadrant, size // 2
    mask = np.zeros((size, size), bool)
    mask[row * half:(row + 1) * half, column * half:(column + 1) * half] = True
    return mask


def make_region_dogs(root, per_class: int = 60, size: int = 64, seed: int = 0) -> Path:
    """Write `Images/<folder>/<n>.jpg` for both classes (no lists: the recipe splits 80/10/10)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, (folder, _, _) in enumerate(CLASSES):
        (root / "Images" / folder).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            draw_region_picture(rng, label, size)[0].save(root / "Images" / folder / f"{folder[:9]}_{k}.jpg", quality=95)
    return root
