"""Open Images crops look-alikes: hamburgers are round and stacked, sandwiches triangular."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


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
