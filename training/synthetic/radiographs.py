"""Synthetic dental radiographs with teeth and dark lesions, and their annotation exports.

A radiograph is dark soft tissue with a bright bone band, a row of bright teeth
(crown and tapering roots) and, on some crowns, a dark irregular lesion ("caries")
and optionally a very bright blob ("filling"): two lesion kinds that look different
(dark and irregular against bright and compact), for the several-class recipes. How
often each appears per tooth is `lesion_rate` (caries) and `filling_rate` (default
0.6 x lesion_rate), and `filling_scale` enlarges the fillings. Each lesion is an annotated polygon
and the picture is drawn *from* that polygon's rasterised mask, so the annotation
is exactly what is visible. Writers produce the same annotations as VoTT's JSON
export, LabelMe files (with or without embedded image data) or a COCO file, so the
demo and the tests go through the real readers.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.datasets.annotations import polygon_mask

CLASSES = ("caries", "filling")


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float, points: int = 10) -> np.ndarray:
    """An irregular closed polygon around (cx, cy): (N, 2) x, y."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    radii = radius * rng.uniform(0.6, 1.2, points)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def draw_radiograph(rng: np.random.Generator, width: int = 160, height: int = 96, classes=("caries",),
                    lesion_rate: float = 0.6, teeth=(3, 6), filling_rate: float | None = None,
                    filling_scale: float = 1.0):
    """A greyscale radiograph (uint8 H x W) and its shapes [(class name, polygon points)].

    Per tooth, a caries with probability `lesion_rate` and a filling with probability
    `filling_rate` (default 0.6 x lesion_rate), `filling_scale` times the usual size."""
    if filling_rate is None:
        filling_rate = lesion_rate * 0.6
    y, x = np.mgrid[0:height, 0:width]
    tissue = rng.uniform(25, 55) + 25 * np.exp(-((y - height / 2) / (0.5 * height)) ** 2)
    picture = Image.fromarray(np.clip(tissue, 0, 255).astype(np.uint8), "L")
    draw = ImageDraw.Draw(picture)
    bone = rng.uniform(80, 110)
    draw.rectangle([0, height * 0.62, width, height], fill=int(bone))
    count = int(rng.integers(teeth[0], teeth[1] + 1))
    pitch = width / count
    shapes = []
    for t in range(count):
        cx = pitch * (t + 0.5) + rng.uniform(-0.06, 0.06) * pitch
        crown_w = pitch * rng.uniform(0.62, 0.8)
        crown_top = height * rng.uniform(0.12, 0.2)
        crown_bottom = height * rng.uniform(0.5, 0.56)
        shade = int(rng.uniform(170, 215))
        for side in (-1, 1):  # two roots, tapering into the bone
            draw.polygon([(cx + side * crown_w * 0.05, crown_bottom - 4), (cx + side * crown_w * 0.42, crown_bottom - 4),
                          (cx + side * crown_w * 0.2, height * rng.uniform(0.88, 0.97))], fill=shade - 30)
        draw.rounded_rectangle([cx - crown_w / 2, crown_top, cx + crown_w / 2, crown_bottom],
                               radius=crown_w * 0.3, fill=shade)
        crown = (cx, (crown_top + crown_bottom) / 2, crown_w, crown_bottom - crown_top)
        side = rng.choice([-1, 1])
        caries = None
        if "caries" in classes and rng.random() < lesion_rate:
            radius = crown_w * rng.uniform(0.14, 0.22)
            lesion_x = cx + side * crown_w * rng.uniform(0.1, 0.22)
            lesion_y = crown[1] + crown[3] * rng.uniform(-0.1, 0.2)
            caries = blob(rng, lesion_x, lesion_y, radius)
            shapes.append(("caries", caries))
        if "filling" in classes and rng.random() < filling_rate:
            filling = blob(rng, cx - side * crown_w * 0.2, crown_top + crown[3] * 0.25,
                           crown_w * rng.uniform(0.12, 0.18) * filling_scale, points=6)
            # Fillings and caries never overlap here, so the masks stay one class per pixel.
            if caries is None or not (polygon_mask(filling, height, width) & polygon_mask(caries, height, width)).any():
                shapes.append(("filling", filling))
    pixels = np.asarray(picture.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    for name, points in shapes:
        covered = polygon_mask(points, height, width)
        if name == "caries":
            pixels[covered] = pixels[covered] * rng.uniform(0.3, 0.45)
        else:
            pixels[covered] = 250
    pixels += rng.normal(0, 6, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8), shapes


def make_radiographs(images_dir, count: int = 60, size=(160, 96), classes=("caries",), seed: int = 0,
                     sixteen_bit_every: int = 7, teeth=(3, 6), lesion_rate: float = 0.6,
                     filling_rate: float | None = None, filling_scale: float = 1.0):
    """Write `count` radiographs as PNG (every `sixteen_bit_every`-th as 16-bit greyscale, as
    radiographs often are) and return [(file name, (width, height), shapes)]. The lesion
    options are draw_radiograph's."""
    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for n in range(count):
        width = int(size[0] * rng.uniform(0.85, 1.15))
        height = int(size[1] * rng.uniform(0.85, 1.15))
        pixels, shapes = draw_radiograph(rng, width, height, classes, lesion_rate, teeth, filling_rate, filling_scale)
        name = f"xray_{n:04d}.png"
        if sixteen_bit_every and n % sixteen_bit_every == sixteen_bit_every - 1:
            Image.fromarray(pixels.astype(np.uint16) * 257).save(images_dir / name)  # mode I;16
        else:
            Image.fromarray(pixels, "L").save(images_dir / name)
        items.append((name, (width, height), shapes))
    return items


# --- annotation exports ------------------------------------------------------------------

def write_vott(file, items, classes=CLASSES) -> Path:
    """VoTT's JSON export: project tags and assets -> regions with type, tags, points, boundingBox."""
    assets = {}
    for n, (name, (width, height), shapes) in enumerate(items):
        regions = []
        for k, (label, points) in enumerate(shapes):
            left, top = points.min(axis=0)
            right, bottom = points.max(axis=0)
            regions.append({"id": f"r{n}_{k}", "type": "POLYGON", "tags": [label],
                            "boundingBox": {"height": bottom - top, "width": right - left, "left": left, "top": top},
                            "points": [{"x": float(x), "y": float(y)} for x, y in points]})
        asset_id = f"{n:032x}"
        assets[asset_id] = {"asset": {"format": Path(name).suffix[1:], "id": asset_id, "name": name,
                                      "path": f"file:C:/radiographs/{name}", "size": {"width": width, "height": height},
                                      "state": 2, "type": 1},
                            "regions": regions, "version": "2.2.0"}
    export = {"name": "caries", "securityToken": "caries-token", "videoSettings": {"frameExtractionRate": 15},
              "tags": [{"name": c, "color": "#ff0000"} for c in classes], "assets": assets, "version": "2.2.0"}
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    Path(file).write_text(json.dumps(export, indent=1))
    return Path(file)


def write_labelme(folder, items, images_dir=None, embed: bool = False) -> Path:
    """One LabelMe JSON per image (polygons), imagePath relative to the JSON; imageData embedded if asked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height), shapes in items:
        data = None
        if embed:
            data = base64.b64encode((Path(images_dir) / name).read_bytes()).decode()
        document = {"version": "5.4.1", "flags": {}, "imagePath": f"../images/{name}", "imageData": data,
                    "imageHeight": height, "imageWidth": width,
                    "shapes": [{"label": label, "points": points.tolist(), "group_id": None, "description": "",
                                "shape_type": "polygon", "flags": {}} for label, points in shapes]}
        (folder / f"{Path(name).stem}.json").write_text(json.dumps(document))
    return folder


def write_coco(file, items, classes=CLASSES) -> Path:
    """COCO instances: images, polygon annotations with bbox and area, categories."""
    images, annotations = [], []
    ids = {c: i + 1 for i, c in enumerate(classes)}
    for n, (name, (width, height), shapes) in enumerate(items):
        images.append({"id": n + 1, "file_name": name, "width": width, "height": height})
        for label, points in shapes:
            left, top = points.min(axis=0)
            right, bottom = points.max(axis=0)
            annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": ids[label],
                                "segmentation": [points.reshape(-1).tolist()], "iscrowd": 0,
                                "bbox": [float(left), float(top), float(right - left), float(bottom - top)],
                                "area": float(polygon_mask(points, height, width).sum())})
    Path(file).write_text(json.dumps({"images": images, "annotations": annotations,
                                      "categories": [{"id": i, "name": c} for c, i in ids.items()]}))
    return Path(file)


def make_caries_dataset(root, count: int = 60, size=(160, 96), classes=("caries",), seed: int = 0,
                        teeth=(3, 6), lesion_rate: float = 0.6, filling_rate: float | None = None,
                        filling_scale: float = 1.0) -> tuple[Path, Path]:
    """Radiographs in root/images and their VoTT export in root/vott/caries-export.json.
    classes=("caries", "filling") gives two exclusive lesion kinds (see draw_radiograph)."""
    root = Path(root)
    items = make_radiographs(root / "images", count, size, classes, seed, teeth=teeth, lesion_rate=lesion_rate,
                             filling_rate=filling_rate, filling_scale=filling_scale)
    export = write_vott(root / "vott" / "caries-export.json", items, classes)
    return root / "images", export
