"""Polygon and rectangle annotations from VoTT, LabelMe and COCO, and their rasterisation.

Rasterisation convention (one rule for every format and shape):

* Coordinates are continuous image coordinates: (0, 0) is the top-left corner of
  the top-left pixel, x grows to the right, y downwards; pixel (row r, column c)
  is the unit square [c, c+1) x [r, r+1) with its centre at (c + 0.5, r + 0.5).
  This is the frame VoTT, LabelMe and COCO all draw in (a COCO box [0, 0, W, H]
  is the whole image).
* A shape covers a pixel when the pixel's centre is inside it (even-odd rule, so a
  self-intersecting polygon leaves its doubly-covered parts empty).
* A centre lying exactly on an edge belongs to the shape whose interior is to the
  right of or below that edge (the "top-left rule" of GPU rasterisers): left and
  top edges are included, right and bottom edges excluded. Two shapes sharing an
  edge therefore split its pixels with no gap and no overlap.
* A rectangle is the polygon of its four corners, so it is inclusive of its near
  edges and exclusive of its far ones: (x1, y1)-(x2, y2) with integer corners
  covers columns x1..x2-1 and rows y1..y2-1, exactly (x2-x1) * (y2-y1) pixels.
* Whatever lies outside the image is cut off; what is inside is rasterised exactly
  as if the image were larger.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from core.images import MAX_PIXELS
from core.segmentation import resize_mask
from training.datasets.coco_rle import rle_mask

BACKGROUND = "background"
# No image is this wide (Pillow's sizes are 32-bit); a coordinate beyond it is an error in the
# file, and keeping coordinates below it keeps the rasteriser's products finite.
FAR = 2 ** 31


# --- rasterisation ---------------------------------------------------------------------

def polygon_mask(points, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of the pixels a polygon covers (see the module's convention)."""
    mask = np.zeros((height, width), dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3 or height <= 0 or width <= 0:
        return mask
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Every edge oriented downwards, so an edge shared by two polygons gives bit-identical crossings.
    flip = y0 > y1
    ax, ay = np.where(flip, x1, x0), np.where(flip, y1, y0)
    bx, by = np.where(flip, x0, x1), np.where(flip, y0, y1)
    first = max(0, math.ceil(pts[:, 1].min() - 0.5))
    last = min(height, math.ceil(pts[:, 1].max() - 0.5))  # exclusive
    if first >= last:
        return mask
    rows = np.arange(first, last)
    centre_y = rows[:, None] + 0.5
    crosses = (ay <= centre_y) & (centre_y < by)  # half-open in y: top edges in, bottom edges out
    with np.errstate(divide="ignore", invalid="ignore"):
        x = ax + (centre_y - ay) * (bx - ax) / (by - ay)
    x = np.where(crosses, x, np.inf)
    x.sort(axis=1)
    count = crosses.sum(axis=1)
    # Spans [x_2k, x_2k+1): centres c + 0.5 with x_2k <= c + 0.5 < x_2k+1.
    starts = np.clip(np.ceil(x[:, 0::2] - 0.5), 0, width)
    ends = np.clip(np.ceil(x[:, 1::2] - 0.5), 0, width)
    pairs = min(starts.shape[1], ends.shape[1])
    starts, ends = starts[:, :pairs], ends[:, :pairs]
    valid = (np.arange(pairs)[None, :] * 2 + 1 < count[:, None]) & (ends > starts)
    edges = np.zeros((len(rows), width + 1), dtype=np.int32)
    row_index = np.broadcast_to(np.arange(len(rows))[:, None], starts.shape)
    np.add.at(edges, (row_index[valid], starts[valid].astype(int)), 1)
    np.add.at(edges, (row_index[valid], ends[valid].astype(int)), -1)
    mask[first:last] = np.cumsum(edges, axis=1)[:, :width] > 0
    return mask


def rectangle_points(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """The four corners of a rectangle given by two opposite corners, in any order."""
    x1, x2 = sorted((float(left), float(right)))
    y1, y2 = sorted((float(top), float(bottom)))
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])


# --- a common form for every format ----------------------------------------------------

@dataclass
class Shape:
    """One annotated region: its tags, its outline (or a ready mask), where it came from."""

    tags: list[str]
    kind: str  # "polygon", "rectangle" or "mask" (COCO run-length encoding, either form)
    points: np.ndarray | None = None  # (N, 2) x, y in the annotation's frame
    mask: np.ndarray | None = None  # boolean, already at the frame's size
    where: str = ""


@dataclass
class ImageAnnotation:
    """The shapes of one image, the frame (width, height) they were drawn in, and the image reference."""

    image: str  # file name or relative path, as the export names it
    shapes: list[Shape]
    frame: tuple[int, int] | None = None
    image_data: bytes | None = None  # LabelMe's embedded copy of the image
    where: str = ""


@dataclass
class Export:
    """What one annotation file holds: images, the tags it declares (in order), and its problems."""

    format: str
    images: list[ImageAnnotation]
    declared_tags: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)

    def problem(self, kind: str, text: str):
        self.problems.setdefault(kind, []).append(text)


def read_export(file: Path) -> Export:
    """Read one JSON annotation file, recognising its format from its content."""
    file = Path(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise AnnotationError(f"{file.name} is not readable JSON: {type(error).__name__}: {error}") from None
    if isinstance(data, dict) and ("assets" in data or ("asset" in data and "regions" in data)):
        return read_vott(data, file.name)
    if isinstance(data, dict) and "shapes" in data:
        return read_labelme(data, file.name)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return read_coco(data, file.name)
    raise AnnotationError(
        f"{file.name} is not a VoTT export (assets/regions), a LabelMe file (shapes) or a COCO file "
        f"(images/annotations/categories)")


class AnnotationError(ValueError):
    """An annotation file that cannot be read at all; the message names it and says why."""


# Whatever a reader meets where the format has an object, a list, a number or a string, it raises
# one of these inside an entry (reported for that entry), so one bad entry never stops the file.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"coordinate {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"coordinate {value!r} is not a finite number")
    return number


def _points(pairs) -> np.ndarray:
    """(N, 2) finite coordinates from [[x, y], ...]."""
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ValueError("points are not a list of [x, y] pairs")
    return np.array([[_number(x), _number(y)] for x, y in pairs], dtype=np.float64).reshape(-1, 2)


def _frame(width, height):
    """The (width, height) an export declares for its image, or None unless both are positive whole numbers."""
    if not all(_whole(v) or (isinstance(v, float) and v.is_integer()) for v in (width, height)):
        return None
    width, height = int(width), int(height)
    return (width, height) if width > 0 and height > 0 else None


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(value) -> bool:
    """Whether an id can be looked up (COCO ids are integers; some tools write strings)."""
    return _whole(value) or isinstance(value, str)


def image_name(value) -> str | None:
    """The export's reference to an image file, or None when it cannot name one (not a string,
    no file name at its end, a NUL, not encodable as a file name)."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    base = PurePosixPath(value.replace("\\", "/")).name
    try:
        too_long = len(base.encode("utf-8")) > 255
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return None
    return None if base in ("", ".", "..") or too_long else value


def _tags(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"tags {value!r} are not a list of names")
    return value


def _entries(export: Export, data: dict, key: str, name: str) -> list:
    """The list under `key` (none when absent); anything else there is reported and skipped."""
    value = data.get(key)
    if value is None or isinstance(value, list):
        return value or []
    export.problem("malformed_entries", f"{name}: {key} is {type(value).__name__}, not a list")
    return []


# --- VoTT --------------------------------------------------------------------------------

def read_vott(data: dict, name: str) -> Export:
    """VoTT's JSON export ({"tags": [...], "assets": {id: {"asset": ..., "regions": [...]}}})
    or one of its per-asset files ({"asset": ..., "regions": [...]})."""
    export = Export("VoTT", [])
    export.declared_tags = [t["name"] for t in _entries(export, data, "tags", name)
                            if isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"]]
    assets = data.get("assets")
    if "assets" not in data:
        entries = [data]
    elif isinstance(assets, (dict, list)):
        entries = list(assets.values()) if isinstance(assets, dict) else assets
    else:
        export.problem("malformed_entries", f"{name}: assets is {type(assets).__name__}, not an object or a list")
        entries = []
    for entry in entries:
        asset = entry.get("asset") if isinstance(entry, dict) else None
        path = asset.get("path") if isinstance(asset, dict) else None
        image = isinstance(asset, dict) and (image_name(asset.get("name")) or image_name(
            PurePosixPath(path.replace("\\", "/").removeprefix("file:")).name if isinstance(path, str) else None))
        if not image:
            export.problem("malformed_entries", f"{name}: an asset without a usable name")
            continue
        size = asset.get("size") if isinstance(asset.get("size"), dict) else {}
        annotation = ImageAnnotation(image, [], _frame(size.get("width"), size.get("height")), where=f"{name}: {image}")
        for index, region in enumerate(_entries(export, entry, "regions", f"{name}: {image}")):
            label = region.get("id", index) if isinstance(region, dict) else index
            where = f"{name}: {image} region {label if isinstance(label, (str, int)) else index}"
            try:
                kind = str(region.get("type", "")).upper()
                tags = _tags(region.get("tags") or [])
                if kind == "RECTANGLE":
                    box = region["boundingBox"]
                    left, top = _number(box["left"]), _number(box["top"])
                    points = rectangle_points(left, top, left + _number(box["width"]), top + _number(box["height"]))
                    annotation.shapes.append(Shape(tags, "rectangle", points, where=where))
                elif kind == "POLYGON":
                    points = region["points"]
                    if not isinstance(points, list):
                        raise ValueError("points are not a list")
                    annotation.shapes.append(Shape(tags, "polygon", _points([[p["x"], p["y"]] for p in points]), where=where))
                else:
                    export.problem("unsupported_shapes", f"{where}: type {kind or '?'} is not a polygon or rectangle")
            except MALFORMED as error:
                export.problem("malformed_shapes", f"{where}: {type(error).__name__}: {error}")
        export.images.append(annotation)
    return export


# --- LabelMe -----------------------------------------------------------------------------

def read_labelme(data: dict, name: str) -> Export:
    """One LabelMe file: shapes (label, points, shape_type), imagePath, optional base64 imageData."""
    export = Export("LabelMe", [])
    image = image_name(data.get("imagePath"))
    if image is None:
        if data.get("imagePath") is not None:
            export.problem("malformed_entries", f"{name}: imagePath {str(data['imagePath'])[:80]!r} names no file; "
                                                f"the annotation file's own name is used")
        image = Path(name).with_suffix("").name
    embedded = None
    if data.get("imageData"):
        try:
            embedded = base64.b64decode(data["imageData"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            export.problem("malformed_entries", f"{name}: imageData is not valid base64; the image file is used")
    annotation = ImageAnnotation(image, [], _frame(data.get("imageWidth"), data.get("imageHeight")),
                                 image_data=embedded, where=name)
    for index, shape in enumerate(_entries(export, data, "shapes", name)):
        where = f"{name}: shape {index}"
        try:
            kind = shape.get("shape_type") or "polygon"
            label = shape["label"]
            if not isinstance(label, str):
                raise ValueError(f"label {label!r} is not a name")
            points = _points(shape["points"])
            if kind == "polygon":
                annotation.shapes.append(Shape([label], "polygon", points, where=where))
            elif kind == "rectangle":
                if len(points) != 2:
                    raise ValueError(f"a rectangle needs 2 corner points, not {len(points)}")
                annotation.shapes.append(Shape([label], "rectangle", rectangle_points(*points[0], *points[1]), where=where))
            else:
                export.problem("unsupported_shapes", f"{where} ({label}): shape_type {kind} is not a polygon or rectangle")
        except MALFORMED as error:
            export.problem("malformed_shapes", f"{where}: {type(error).__name__}: {error}")
    export.images.append(annotation)
    return export


# --- COCO --------------------------------------------------------------------------------

def read_coco(data: dict, name: str) -> Export:
    """COCO instances: images (id, file_name, width, height), annotations (polygon segmentation,
    run-length mask, compressed or not, or only a bbox), categories (id, name)."""
    export = Export("COCO", [])
    categories = {}
    for category in _entries(export, data, "categories", name):
        if isinstance(category, dict) and _key(category.get("id")) and isinstance(category.get("name"), str):
            categories[category["id"]] = category["name"]
        else:
            export.problem("malformed_entries", f"{name}: a category without id or name")
    export.declared_tags = [categories[k] for k in sorted(categories, key=lambda k: (isinstance(k, str), k))]
    by_id = {}
    for image in _entries(export, data, "images", name):
        file_name = image_name(image.get("file_name")) if isinstance(image, dict) else None
        if not file_name or not _key(image.get("id")):
            export.problem("malformed_entries", f"{name}: an image without id or a usable file_name")
            continue
        annotation = ImageAnnotation(file_name, [], _frame(image.get("width"), image.get("height")),
                                     where=f"{name}: {file_name}")
        by_id[image["id"]] = annotation
        export.images.append(annotation)
    for index, item in enumerate(_entries(export, data, "annotations", name)):
        label = item.get("id", index) if isinstance(item, dict) else index
        where = f"{name}: annotation {label if isinstance(label, (str, int)) else index}"
        try:
            image_id = item.get("image_id")
            target = by_id.get(image_id) if _key(image_id) else None
            if target is None:
                export.problem("malformed_shapes", f"{where}: image_id {image_id!r} is not in images")
                continue
            category = item.get("category_id")
            tags = [categories[category]] if _key(category) and category in categories else [f"category {category}"]
            segmentation = item.get("segmentation")
            if isinstance(segmentation, list) and segmentation:
                for polygon in segmentation:
                    if not isinstance(polygon, list) or len(polygon) % 2:
                        raise ValueError("a polygon is not a list of x, y coordinates")
                    target.shapes.append(Shape(tags, "polygon", _points([polygon[i:i + 2] for i in range(0, len(polygon), 2)]),
                                               where=where))
            elif isinstance(segmentation, dict):
                target.shapes.append(Shape(tags, "mask", mask=coco_mask(segmentation, target.frame), where=where))
            elif item.get("bbox"):
                bbox = item["bbox"]
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
                left, top, w, h = (_number(v) for v in bbox)
                target.shapes.append(Shape(tags, "rectangle", rectangle_points(left, top, left + w, top + h), where=where))
            else:
                export.problem("malformed_shapes", f"{where}: neither segmentation nor bbox")
        except MALFORMED as error:
            export.problem("malformed_shapes", f"{where}: {type(error).__name__}: {error}")
    return export


def coco_mask(segmentation: dict, frame: tuple[int, int] | None) -> np.ndarray:
    """A COCO run-length mask, decoded only once its declared size is checked: it must be the
    size its image declares (a 200-byte annotation can declare 100000 x 100000 pixels), and no
    larger than an image core.images would open."""
    counts, size = segmentation.get("counts"), segmentation.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_whole(v) and v > 0 for v in size)):
        raise ValueError(f"mask size {size!r} is not [height, width]")
    height, width = size
    if frame is None:
        raise ValueError("the image declares no width and height to check the mask's size against")
    if (width, height) != frame:
        raise ValueError(f"mask size {width} x {height} is not its image's {frame[0]} x {frame[1]}")
    if width * height > MAX_PIXELS:
        raise ValueError(f"a {width} x {height} mask is over the {MAX_PIXELS / 1e6:.0f}-megapixel limit for images")
    if not isinstance(counts, (str, list)):
        raise ValueError("counts is neither a list of run lengths nor a compressed string")
    return rle_mask(counts, height, width)



# --- shapes to masks ---------------------------------------------------------------------

@dataclass
class Rasterised:
    """The masks of one image: integer classes (later shapes drawn over earlier ones) and the
    per-class coverage (which may overlap), plus what was noticed on the way."""

    classes: np.ndarray  # (H, W) uint8, 0 = background, i = class_names[i - 1]
    coverage: np.ndarray  # (H, W, K + 1) bool, channel 0 = no class
    overlap_pixels: int
    problems: dict[str, list[str]]


def shapes_to_masks(annotation: ImageAnnotation, size: tuple[int, int], class_names: list[str]) -> Rasterised:
    """Rasterise an image's shapes at the image's real `size` (width, height).

    Tags pick the class: the first tag that names a class (ignoring case); a shape with
    none is reported as an unknown tag and left out. Coordinates drawn in another frame
    (the export's image size differs from the file's) are rescaled to the file's size.
    """
    width, height = size
    lookup = {name.lower(): index + 1 for index, name in enumerate(class_names)}
    problems: dict[str, list[str]] = {}
    classes = np.zeros((height, width), dtype=np.uint8)
    coverage = np.zeros((height, width, len(class_names) + 1), dtype=bool)
    frame = annotation.frame or (width, height)
    scale = np.array([width / frame[0], height / frame[1]])
    if annotation.frame and annotation.frame != (width, height):
        problems.setdefault("size_mismatches", []).append(
            f"{annotation.where}: annotated on {frame[0]} x {frame[1]}, the image is {width} x {height}; "
            f"coordinates rescaled")
    for shape in annotation.shapes:
        known = [lookup[t.lower()] for t in shape.tags if t.lower() in lookup]
        if not known:
            problems.setdefault("unknown_tags", []).append(
                f"{shape.where}: tags {shape.tags or '(none)'} name no class ({', '.join(class_names)})")
            continue
        if len(set(known)) > 1:
            problems.setdefault("ambiguous_tags", []).append(
                f"{shape.where}: tags {shape.tags} name several classes; the first, {class_names[known[0] - 1]}, is used")
        if shape.kind == "mask":
            covered = resize_mask(shape.mask, width, height)
        else:
            with np.errstate(over="ignore"):
                points = shape.points * scale
            if not (np.abs(points) < FAR).all():
                problems.setdefault("malformed_shapes", []).append(
                    f"{shape.where}: coordinates beyond {FAR} pixels from the image's corner")
                continue
            issue = degenerate(points)
            if issue:
                problems.setdefault("degenerate_shapes", []).append(f"{shape.where}: {issue}")
                continue
            covered = polygon_mask(points, height, width)
            outside = (points[:, 0] < 0) | (points[:, 1] < 0) | (points[:, 0] > width) | (points[:, 1] > height)
            if outside.any():
                if not covered.any():
                    problems.setdefault("shapes_outside", []).append(f"{shape.where}: entirely outside the image, dropped")
                    continue
                problems.setdefault("clipped_shapes", []).append(
                    f"{shape.where}: {int(outside.sum())} of {len(points)} points outside the image, clipped")
        if not covered.any():
            problems.setdefault("degenerate_shapes", []).append(f"{shape.where}: covers no pixel centre (too small)")
            continue
        classes[covered] = known[0]
        coverage[..., known[0]] |= covered
    coverage[..., 0] = ~coverage[..., 1:].any(axis=-1)
    overlap = int((coverage[..., 1:].sum(axis=-1) > 1).sum())
    return Rasterised(classes, coverage, overlap, problems)


def degenerate(points: np.ndarray) -> str:
    """Why a polygon cannot cover anything ('' when it can)."""
    distinct = np.unique(np.round(points, 6), axis=0)
    if len(distinct) < 3:
        return f"{len(distinct)} distinct point(s); a polygon needs 3"
    x, y = points[:, 0], points[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if area < 1e-9:
        return "zero area (all points on one line)"
    return ""
