"""Which boxes and images a build takes: annotation rows the options keep (--drop-group-of,
--drop-depiction, --min-box-size), the image lists' rows for their images, --subset, and
--max-per-class met in ImageID order from the images that download."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from training.open_images.classes import Class
from training.open_images.csv_files import read_header, stream_csv
from training.open_images.origins import NOT_HTTP, SCHEMES, ImageOrigin, scheme
from training.open_images.report import Report

# Open Images' ImageIDs are 16 hex digits; anything else in that column could name a path
# (../x, /abs/x) where <out>/images/<ImageID>.jpg and the crops are written.
IMAGE_ID = re.compile(r"[0-9a-f]{16}")
BAD_IMAGE_ID = "ImageID not 16 hex digits"


@dataclass(frozen=True)
class Box:
    image: str
    k: int  # index among the image's boxes of the wanted classes, in (file, line) order
    label: str
    xmin: float
    xmax: float
    ymin: float
    ymax: float

    @property
    def name(self) -> str:
        return f"{self.image}_{self.k}"


@dataclass(frozen=True)
class BoxFilters:
    """Which boxes to leave out: --drop-group-of, --drop-depiction, --min-box-size."""
    drop_group_of: bool
    drop_depiction: bool
    min_box_size: float


def drop_reason(row: list[str], columns: dict[str, int], box: Box, filters: BoxFilters) -> str | None:
    """Why an option leaves this box out, if it does. Flags are 0/1, -1 unknown (kept)."""
    def flag(name):
        return name in columns and row[columns[name]].strip() == "1"

    if filters.drop_group_of and flag("IsGroupOf"):
        return "group-of"
    if filters.drop_depiction and flag("IsDepiction"):
        return "depiction"
    if min(box.xmax - box.xmin, box.ymax - box.ymin) < filters.min_box_size:
        return f"smaller than --min-box-size {filters.min_box_size}"
    return None


def read_boxes(meta: Path, targets: dict[str, Class], filters: BoxFilters, digests: dict, report: Report,
               progress: bool) -> list[Box]:
    """Boxes of the wanted labels (`targets`: label -> the class it goes to) that the options keep,
    in (file, line) order."""
    files = sorted(meta.glob("*-annotations-bbox.csv"))
    if not files:
        raise SystemExit(f"No *-annotations-bbox.csv in {meta}")
    coordinates = ("XMin", "XMax", "YMin", "YMax")
    boxes, seen = [], Counter()
    for path in files:
        rows = stream_csv(path, digests, progress)
        columns, width = read_header(path, rows, ("ImageID", "LabelName", *coordinates))
        for line, row in rows:
            if isinstance(row, csv.Error) or (row and len(row) != width):
                report.skip_row(path.name, line, f"malformed row: {row}" if isinstance(row, csv.Error)
                                else f"malformed row: {len(row)} fields, the header has {width}")
                continue
            if not row or row[columns["LabelName"]].strip() not in targets:
                continue  # parse only the wanted rows: the files hold millions
            try:
                xmin, xmax, ymin, ymax = (float(row[columns[name]]) for name in coordinates)
            except ValueError:
                report.skip_row(path.name, line, "malformed row: non-numeric coordinates")
                continue
            if not (0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0):  # also catches nan
                report.skip_row(path.name, line, f"malformed row: XMin {xmin} XMax {xmax} YMin {ymin} YMax {ymax} "
                                                 "(need 0 <= min < max <= 1)")
                continue
            image, label = row[columns["ImageID"]].strip(), row[columns["LabelName"]].strip()
            if not image:
                report.skip_row(path.name, line, "malformed row: no ImageID")
                continue
            if not IMAGE_ID.fullmatch(image):
                report.refuse_row(path.name, line, BAD_IMAGE_ID, f"{BAD_IMAGE_ID}: {image!r}")
                continue
            box = Box(image, seen[image], label, xmin, xmax, ymin, ymax)
            seen[image] += 1
            reason = drop_reason(row, columns, box, filters)
            if reason:
                report.skip_box(box, targets[label].folder, reason)
            else:
                boxes.append(box)
    return boxes


def parse_rotation(text: str) -> int:
    """0/90/180/270; empty or nan (the photo was gone when rotations were collected) is tried as stored."""
    text = text.strip().lower()
    if text in ("", "nan"):
        return 0
    angle = float(text)
    if angle not in (0, 90, 180, 270):
        raise ValueError(text)
    return int(angle)


# What the image lists say of each photo's licence and author: it travels with the crops.
LICENCE_COLUMNS = ("License", "AuthorProfileURL", "Author", "Title", "OriginalURL", "OriginalLandingURL")


def read_images(meta: Path, wanted: set[str], origin: ImageOrigin, digests: dict, report: Report,
                progress: bool) -> dict[str, dict]:
    """ImageID -> {subset, url, md5, source, rotation, licence} for the wanted images (first list,
    by file name, wins)."""
    files = sorted(meta.glob("*-images-*with-rotation.csv"))
    if not files:
        raise SystemExit(f"No *-images-*with-rotation.csv (e.g. train-images-boxable-with-rotation.csv) in {meta}")
    images = {}
    for path in files:
        rows = stream_csv(path, digests, progress)
        columns, width = read_header(path, rows, ("ImageID", "Subset", "OriginalURL", "OriginalMD5", "Rotation"))
        for line, row in rows:
            image = row[columns["ImageID"]].strip() if isinstance(row, list) and len(row) > columns["ImageID"] else ""
            if image not in wanted or image in images or image in report.images:
                continue
            if len(row) != width:
                report.skip_image(image, f"malformed image-list row ({path.name}:{line})")
                continue
            try:
                rotation = parse_rotation(row[columns["Rotation"]])
            except ValueError:
                report.skip_image(image, f"unsupported rotation {row[columns['Rotation']]!r}")
                continue
            subset, url, md5 = (row[columns[name]].strip() for name in ("Subset", "OriginalURL", "OriginalMD5"))
            images[image] = {"subset": subset, "rotation": rotation, **origin.locate(image, subset, url, md5),
                             "licence": {name: row[columns[name]].strip() for name in LICENCE_COLUMNS if name in columns}}
    return images


@dataclass(frozen=True)
class Selection:
    """Which of the kept boxes to crop: --subset (empty: all) and --max-per-class (0: no cap)."""
    subset: frozenset[str]
    max_per_class: int


def select(boxes: list[Box], images: dict[str, dict], targets: dict[str, Class], subset: frozenset[str],
           report: Report) -> dict[str, list[Box]]:
    """ImageID -> the boxes to crop if the image downloads: listed, in --subset (empty: all), with
    a URL to fetch. Boxes in k order."""
    by_image = defaultdict(list)
    for box in boxes:
        by_image[box.image].append(box)
    candidates = {}
    for image in sorted(by_image):
        info = images.get(image)
        for box in sorted(by_image[image], key=lambda b: b.k):
            if info is None:
                report.skip_image(image, "not in image list")
            elif subset and info["subset"] not in subset:
                report.dropped["not in --subset"][targets[box.label].folder] += 1
            elif not info["url"]:
                report.skip_image(image, "no OriginalURL")
            elif scheme(info["url"]) not in SCHEMES:
                report.refuse_image(image, NOT_HTTP, f"{NOT_HTTP}: {scheme(info['url']) or 'no scheme'}")
            else:
                candidates.setdefault(image, []).append(box)
    return candidates


def pixel_box(box: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the box in the stored pixels, or None when it is under 2 px."""
    left, right = round(box.xmin * width), round(box.xmax * width)
    top, bottom = round(box.ymin * height), round(box.ymax * height)
    if right - left < 2 or bottom - top < 2:
        return None
    return left, top, right, bottom


def assign(candidates: dict[str, list[Box]], targets: dict[str, Class], cap: int, sizes: dict) -> tuple[dict, list[str]]:
    """One walk in ImageID order. `sizes` has the stored size of each image tried so far (None:
    it failed). Returns the croppable boxes of downloaded images, taken while their class has
    fewer than `cap` (0: no cap), and the untried images a class still needs (counted as if they
    will succeed until they are tried)."""
    taken, chosen, wanted = Counter(), {}, []
    for image in sorted(candidates):
        boxes = candidates[image]
        if image not in sizes:
            if not cap or any(taken[targets[box.label].folder] < cap for box in boxes):
                wanted.append(image)
                taken.update(targets[box.label].folder for box in boxes)
            continue
        if sizes[image] is None:
            continue
        for box in boxes:
            folder = targets[box.label].folder
            if pixel_box(box, *sizes[image]) and (not cap or taken[folder] < cap):
                taken[folder] += 1
                chosen.setdefault(image, []).append(box)
    return chosen, wanted
