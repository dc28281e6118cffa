"""Image / mask pairs for segmentation: `images/` and `masks/` matched by file stem (a `_mask`
suffix on the mask is allowed), and, as training.caries_masks writes them, `classes.json`
({"classes": ["background", "caries", ...]}: pixel value -> name) and `masks/<stem>.npy` one-hot
masks where classes overlap. Without classes.json, pixel values 1..K become "class 1".."class K",
and 0/255 masks are one class."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.images import WORKING_SIDE, load_image
from core.segmentation import resize_mask


@dataclass
class Pair:
    image: Path
    mask: Path  # .png integer classes, or .npy one-hot (H, W, K + 1)


def read_classes(data: Path, masks: list[Path]) -> tuple[list[str], str]:
    """Foreground class names in pixel-value order, and where they came from."""
    file = data / "classes.json"
    if file.is_file():
        try:
            names = json.loads(file.read_text())["classes"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{file} is not readable ({error}); expected {{\"classes\": [\"background\", ...]}}") from None
        if len(names) < 2:
            raise SystemExit(f"{file} lists no class besides the background")
        return [str(n) for n in names[1:]], "classes.json"
    highest = 0
    for path in masks:
        if path.suffix == ".png":
            values = np.unique(np.asarray(Image.open(path)))
            highest = max(highest, 1 if set(values.tolist()) <= {0, 255} else int(values.max()))
    if highest == 0:
        raise SystemExit(f"{data / 'masks'} holds no labelled pixel and there is no classes.json")
    return [f"class {i}" for i in range(1, highest + 1)], "pixel values (no classes.json)"


def read_dataset(data: Path):
    """Image/mask pairs, class names, whether classes overlap, and a report of what was left out."""
    images_dir, masks_dir = data / "images", data / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise SystemExit(f"{data} needs images/ and masks/ (as `python -m training.caries_masks` writes them)")
    masks = {}
    for path in sorted(masks_dir.iterdir()):
        stem = path.stem[:-5] if path.stem.endswith("_mask") else path.stem
        if path.suffix == ".npy" or (path.suffix == ".png" and stem not in masks):
            masks[stem] = path  # a one-hot .npy (all classes, overlaps kept) wins over the PNG
    report = {"images_without_mask": [], "masks_without_image": []}
    pairs, seen = [], set()
    for path in sorted(images_dir.iterdir()):
        if not path.is_file():
            continue
        if path.stem in masks:
            pairs.append(Pair(path, masks[path.stem]))
            seen.add(path.stem)
        else:
            report["images_without_mask"].append(path.name)
    report["masks_without_image"] = [masks[s].name for s in sorted(set(masks) - seen)]
    classes, origin = read_classes(data, [p.mask for p in pairs])
    overlapping = any(p.mask.suffix == ".npy" for p in pairs)
    return pairs, classes, origin, overlapping, report


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """(H, W, K) boolean per-class mask from a PNG of integer classes or a one-hot .npy."""
    if path.suffix == ".npy":
        onehot = np.load(path, allow_pickle=False)
        if onehot.ndim != 3 or onehot.shape[-1] != num_classes + 1:
            raise ValueError(f"one-hot mask of shape {onehot.shape}; expected (H, W, {num_classes + 1})")
        return onehot[..., 1:].astype(bool)
    image = Image.open(path)
    if image.mode not in ("L", "P", "1", "I", "I;16"):
        raise ValueError(f"mask mode {image.mode}: expected one channel of integer classes (8-bit PNG)")
    values = np.asarray(image).astype(np.int64)
    if set(np.unique(values).tolist()) <= {0, 255} and num_classes == 1:
        values = values // 255
    if values.max() > num_classes:
        raise ValueError(f"pixel value {values.max()} but only {num_classes} class(es)")
    return values[..., None] == np.arange(1, num_classes + 1)


def load_pair(pair: Pair, num_classes: int):
    """The decoded image and its per-class mask at the image's decoded size."""
    picture = load_image(pair.image)
    mask = read_mask(pair.mask, num_classes)
    height, width = mask.shape[:2]
    if (width, height) != picture.size:
        # core.images caps the long side at 2048 px; any other difference is an error in the data.
        downscaled = max(width, height) > WORKING_SIDE and max(picture.size) == WORKING_SIDE
        if not downscaled or abs(width / height - picture.width / picture.height) > 0.01:
            raise ValueError(f"mask is {width} x {height}, image is {picture.width} x {picture.height}")
        mask = resize_mask(mask, picture.width, picture.height)
    return picture, mask
