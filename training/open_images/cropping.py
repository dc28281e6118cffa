"""Cropping: every chosen box cut out of its stored pixels, rotated as Open Images says, and
written into its class folder."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from core.atomic import write_atomic
from training.open_images.classes import Class
from training.open_images.report import Report
from training.open_images.selection import pixel_box

JPEG_QUALITY = 95  # fixed, so the same inputs give the same bytes


def crop_all(chosen: dict, images: dict, out: Path, classes: list[Class], targets: dict[str, Class], report: Report,
             progress: bool) -> list[dict]:
    """Crop every chosen box of every downloaded image; returns the crops, with their SHA-256."""
    root = out / "images_cropped"
    for c in classes:
        (root / c.folder).mkdir(parents=True, exist_ok=True)  # a class with no crop still has its folder
    crops = []
    for image in tqdm(sorted(chosen), desc="cropping", unit="img", file=sys.stderr, disable=not progress):
        source = out / "images" / f"{image}.jpg"
        if not source.is_file():
            continue  # skipped while downloading, already reported
        try:
            with Image.open(source) as stored:  # Image.open applies no EXIF orientation: boxes are in the stored frame
                pixels = stored.convert("RGB")
        except Exception as error:
            report.skip_image(image, f"undecodable image ({type(error).__name__})")
            continue
        for box in chosen[image]:  # all croppable in this size: gather checked
            folder = targets[box.label].folder
            left, top, right, bottom = pixel_box(box, *pixels.size)
            crop = pixels.crop((left, top, right, bottom)).rotate(images[image]["rotation"], expand=True)  # counterclockwise
            buffer = io.BytesIO()
            crop.save(buffer, "JPEG", quality=JPEG_QUALITY)
            write_atomic(root / folder / f"{box.name}.jpg", buffer.getvalue())
            crops.append({"file": f"{folder}/{box.name}.jpg", "image": image, "box": box.k, "label": box.label,
                          "bbox": {"XMin": box.xmin, "XMax": box.xmax, "YMin": box.ymin, "YMax": box.ymax},
                          "xyxy": [left, top, right, bottom], "rotation": images[image]["rotation"],
                          "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})
    # The folders then hold exactly this build: no crops from earlier options, no leftovers.
    keep = {root / crop["file"] for crop in crops}
    for path in root.rglob("*"):
        if path.is_file() and path not in keep:
            path.unlink()
    return crops
