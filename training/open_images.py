"""Carve an image-classification dataset out of Open Images' boxable classes.

    python -m training.open_images --classes "Hamburger" "Sandwich" --meta DIR --out DIR

--meta holds the metadata as distributed: class-descriptions-boxable.csv (no header),
*-annotations-bbox.csv and *-images-*with-rotation.csv (train-images-boxable-with-rotation.csv,
validation-images-with-rotation.csv, ...). They run over a gigabyte, so they are streamed
row by row and hashed on the way. The images holding boxes of the classes are downloaded
(from the CVDF's mirror where it serves the subset, else from Flickr's OriginalURL; --source)
into <out>/images/<ImageID>.jpg and every box is cropped into
<out>/images_cropped/<class folder>/<ImageID>_<k>.jpg, a folder per class as image
classification loaders expect; <out>/manifest.json says what went in, what came out, and
what was skipped and why.

Boxes are in the frame of the stored pixels, and Rotation is "the degrees (counterclockwise)
that the image and boxes should be rotated": so the image is decoded without EXIF
orientation, the box cropped, and the crop rotated. Runs resume: a downloaded image is
never fetched again, and failures for good (404, placeholder, MD5 mismatch, not an image)
are remembered in <out>/download_failures.json (--retry-failed tries them again).

Classes form a hierarchy (bbox_labels_600_hierarchy.json, when it is in --meta): Hamburger and
Submarine sandwich are kinds of Sandwich, which is a kind of Food. Class names match exactly
unless --include-subclasses gathers each class's subclasses into its folder; --list-classes
prints the tree with box counts.

--push-to-hub REPO publishes the build as a Hub dataset repo (the imagefolder layout, a
metadata.jsonl with each crop's source and licence, the manifest and a dataset card) and prints
the commit, which a recipe pins: --data hf://datasets/REPO@COMMIT.
"""

from __future__ import annotations

import argparse
import base64
import csv
import difflib
import hashlib
import io
import json
import os
import platform
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from http.client import HTTPException
from importlib import metadata
from pathlib import Path

import PIL
from PIL import Image
from tqdm import tqdm

from training.datasets.hub import PREFIX as HUB_DATASETS
from training.datasets.hub import push_dataset

# SHA-256 of images served in place of a removed photo without a telling redirect.
PLACEHOLDER_SHA256: frozenset[str] = frozenset()
PLACEHOLDER = "placeholder: photo no longer available"
JPEG_QUALITY = 95  # fixed, so the same inputs give the same bytes
USER_AGENT = "open-images-crops/1.0 (Python urllib)"


@dataclass(frozen=True)
class Class:
    name: str  # display name, as Open Images spells it
    label: str  # e.g. /m/0cdn1
    folder: str  # e.g. hamburger


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


class Report:
    """What was left out, and why: goes into the manifest."""

    def __init__(self):
        self.images: dict[str, str] = {}
        self.boxes: list[dict] = []
        self.dropped: dict[str, Counter] = defaultdict(Counter)  # reason -> class folder -> boxes

    def skip_image(self, image: str, reason: str):
        self.images.setdefault(image, reason)  # the first reason is the real one

    def skip_box(self, box: Box, folder: str, reason: str):
        self.boxes.append({"image": box.image, "box": box.k, "class": folder, "reason": reason})

    def skip_row(self, file: str, line: int, reason: str):
        self.boxes.append({"file": file, "line": line, "reason": reason})


# --- reading the metadata --------------------------------------------------------------

class Hashing(io.RawIOBase):
    """A file read through this is hashed (and its progress shown) on the way: one pass."""

    def __init__(self, handle, sha, bar):
        self.handle, self.sha, self.bar = handle, sha, bar

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self.handle.readinto(buffer)
        self.sha.update(memoryview(buffer)[:count])
        self.bar.update(count)
        return count


def stream_csv(path: Path, digests: dict, progress: bool):
    """Yield (line number, row) without loading the file; its SHA-256 lands in digests.
    A row the csv module cannot parse comes as the csv.Error, so the caller reports it."""
    sha = hashlib.sha256()
    with path.open("rb", buffering=0) as raw, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}",
                                                   file=sys.stderr, disable=not progress, leave=False) as bar:
        # utf-8-sig drops a byte-order mark; newline="" as the csv module wants
        text = io.TextIOWrapper(io.BufferedReader(Hashing(raw, sha, bar), 1 << 20), "utf-8-sig", "replace", newline="")
        reader = csv.reader(text)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                row = error
            yield reader.line_num, row
    digests[path.name] = {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def read_header(path: Path, rows, required) -> tuple[dict[str, int], int]:
    _, header = next(rows, (0, []))
    columns = {name.strip(): i for i, name in enumerate(header if isinstance(header, list) else [])}
    missing = [name for name in required if name not in columns]
    if missing:
        raise SystemExit(f"{path} lacks column(s) {', '.join(missing)}: not an Open Images file of this kind?")
    return columns, len(header)


def read_class_names(meta: Path, digests: dict) -> dict[str, str]:
    """label id -> display name."""
    path = meta / "class-descriptions-boxable.csv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --meta must hold Open Images' class-descriptions-boxable.csv")
    return {row[0].strip(): row[1].strip() for _, row in stream_csv(path, digests, False) if isinstance(row, list) and len(row) == 2}


def folder_name(name: str) -> str:
    """'Hot dog' -> 'hot_dog': the class's folder, as image-classification loaders name classes."""
    return name.lower().replace(" ", "_").replace("/", "_")


def resolve_classes(wanted: list[str], names: dict[str, str]) -> list[Class]:
    """Match the requested names case-insensitively, or a label id (/m/...) as it is. An unknown
    name stops with close matches; a name that two labels share stops with both labels."""
    by_lower = defaultdict(list)
    for label, name in sorted(names.items()):
        by_lower[name.lower()].append(label)
    classes = {}
    for text in wanted:
        key = text.strip()
        if key in names:
            label = key
        elif len(by_lower.get(key.lower(), ())) == 1:
            label = by_lower[key.lower()][0]
        elif key.lower() in by_lower:
            labels = by_lower[key.lower()]
            raise SystemExit(f"Class name {text!r} is the display name of {len(labels)} labels: {', '.join(labels)}. "
                             f"Ask for one by its label, e.g. --classes {labels[0]}")
        else:
            close = [names[by_lower[m][0]] for m in difflib.get_close_matches(key.lower(), list(by_lower), n=5)]
            close += sorted(names[labels[0]] for k, labels in by_lower.items()
                            if key and key.lower() in k and names[labels[0]] not in close)[:10]
            raise SystemExit(f"Unknown class {text!r}. " + (f"Close matches: {', '.join(close)}" if close else "No close matches."))
        classes[label] = Class(names[label], label, folder_name(names[label]))
    if len({c.folder for c in classes.values()}) < len(classes):
        raise SystemExit("Two classes would share one folder: " + ", ".join(f"{c.name} ({c.label})" for c in classes.values()))
    return sorted(classes.values(), key=lambda c: c.folder)


# --- the class hierarchy ---------------------------------------------------------------

HIERARCHY_FILE = "bbox_labels_600_hierarchy.json"
ROOT_LABEL, ROOT_NAME = "/m/0bl9f", "Entity"  # the root is in no class-descriptions file


@dataclass(frozen=True)
class Hierarchy:
    """Open Images' class hierarchy, as bbox_labels_600_hierarchy.json distributes it: nested
    {"LabelName", "Subcategory": [...], "Part": [...]} from the root Entity. A label can sit under
    several parents (the file repeats its node, e.g. a cookie under both dessert and baked goods),
    so the children are gathered per label over every place it appears."""

    subcategories: dict[str, list[str]]  # label -> the labels one Subcategory step below, in file order
    parts: dict[str, list[str]]  # label -> its Part labels (a wheel of a car: not a kind of car)

    def below(self, label: str) -> list[str]:
        """The label and every label under it by Subcategory, recursively (not by Part), each once."""
        found, todo = [], [label]
        while todo:
            current = todo.pop(0)
            if current not in found:
                found.append(current)
                todo += self.subcategories.get(current, [])
        return found

    def __contains__(self, label: str) -> bool:
        return label == ROOT_LABEL or any(label in children for table in (self.subcategories, self.parts)
                                          for children in table.values())


def read_hierarchy(meta: Path, digests: dict) -> Hierarchy | None:
    """The hierarchy in --meta, or None where it is not there (classes are then matched exactly)."""
    path = meta / HIERARCHY_FILE
    if not path.is_file():
        return None
    content = path.read_bytes()
    digests[path.name] = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    try:
        root = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path} is not valid JSON ({error}): expected Open Images' {HIERARCHY_FILE} as distributed")
    subcategories, parts = defaultdict(list), defaultdict(list)
    todo = [(root, "the root")]
    while todo:
        node, where = todo.pop()
        label = node.get("LabelName") if isinstance(node, dict) else None
        if not isinstance(label, str) or not label.strip():
            raise SystemExit(f"{path}: {where} is not a node with a LabelName: not Open Images' {HIERARCHY_FILE}?")
        for key, table in (("Subcategory", subcategories), ("Part", parts)):
            children = node.get(key, [])
            if not isinstance(children, list):
                raise SystemExit(f"{path}: the {key} of {label} is not a list")
            for i, child in enumerate(children):
                todo.append((child, f"{key} {i} of {label}"))
                name = child.get("LabelName") if isinstance(child, dict) else None
                if isinstance(name, str) and name not in table[label]:
                    table[label].append(name)
    return Hierarchy(dict(subcategories), dict(parts))


def need_hierarchy(hierarchy: Hierarchy | None, option: str, meta: Path) -> Hierarchy:
    if hierarchy is None:
        raise SystemExit(f"{option} needs Open Images' class hierarchy: put {HIERARCHY_FILE} (from the "
                         f"Open Images download page) in {meta}")
    return hierarchy


@dataclass(frozen=True)
class Folded:
    """What --include-subclasses made of the requested classes."""
    targets: dict[str, Class]  # annotation label -> the requested class its boxes go to
    ambiguous: dict[str, list[str]]  # label -> the folders of the requested classes it is under
    names: dict[str, str]  # display names, for the manifest


def fold_subclasses(classes: list[Class], hierarchy: Hierarchy, names: dict[str, str]) -> Folded:
    """Every label under a requested class goes to the most specific requested class above it
    (asking for Sandwich and Hamburger keeps hamburgers in hamburger). A label under two requested
    classes neither of which is under the other would make one box two classes: it is left out."""
    under = {c.label: set(hierarchy.below(c.label)) for c in classes}
    targets, ambiguous = {}, {}
    for label in sorted(set().union(*under.values())):
        holders = [c for c in classes if label in under[c.label]]
        innermost = [c for c in holders if all(c.label in under[other.label] for other in holders)]
        if len(innermost) == 1:
            targets[label] = innermost[0]
        else:
            ambiguous[label] = sorted(c.folder for c in holders)
    return Folded(targets, ambiguous, names)


def count_boxes(meta: Path, digests: dict, progress: bool) -> Counter:
    """Boxes per label over every annotation file, for --list-classes."""
    counts = Counter()
    for path in sorted(meta.glob("*-annotations-bbox.csv")):
        rows = stream_csv(path, digests, progress)
        columns, _ = read_header(path, rows, ("LabelName",))
        for _, row in rows:
            if isinstance(row, list) and len(row) > columns["LabelName"]:
                counts[row[columns["LabelName"]].strip()] += 1
    return counts


def boxes(count: int) -> str:
    return f"{count:,} box" + ("" if count == 1 else "es")


def class_tree(hierarchy: Hierarchy, names: dict[str, str], counts: Counter, start: str) -> list[str]:
    """The tree below `start` as indented lines with box counts; parts marked [part] (they are not
    kinds of their parent, so --include-subclasses leaves them out). A label under several parents
    is shown under each, as the file has it."""
    lines = []

    def visit(label, depth, part, path):
        below = hierarchy.below(label)
        line = f"{'  ' * depth}{'[part] ' if part else ''}{names.get(label, label)} ({label}): {boxes(counts[label])}"
        if len(below) > 1:
            line += f", {boxes(sum(counts[other] for other in below))} with subclasses"
        lines.append(line)
        if label in path:
            return  # a label under itself: shown once, not forever
        for child in hierarchy.subcategories.get(label, []):
            visit(child, depth + 1, False, path | {label})
        for child in hierarchy.parts.get(label, []):
            visit(child, depth + 1, True, path | {label})

    visit(start, 0, False, frozenset())
    return lines


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


# The Common Visual Data Foundation's mirror of the images with boxes, addressed as the official
# downloader (openimages/dataset, downloader.py) does: bucket open-images-dataset, key
# {subset}/{ImageID}.jpg, for these subsets.
MIRROR_URL = "https://open-images-dataset.s3.amazonaws.com"
MIRROR_SUBSETS = frozenset({"train", "validation", "test", "challenge2018"})
# What the image lists say of each photo's licence and author: it travels with the crops.
LICENCE_COLUMNS = ("License", "AuthorProfileURL", "Author", "Title", "OriginalURL", "OriginalLandingURL")


@dataclass(frozen=True)
class ImageSource:
    """--source and --mirror-url: where each image is fetched from."""
    prefer: str  # "mirror" or "flickr"
    mirror_url: str

    def locate(self, image: str, subset: str, original_url: str, original_md5: str) -> dict:
        """The URL to fetch, the MD5 to check ("" for none) and which source that is. The mirror's
        files are rescaled (at most 1024 px on the longest side, aspect ratio kept, says the CVDF):
        not the bytes OriginalMD5 describes, so the MD5 is checked on Flickr's originals only.
        Boxes are relative to the image's sides, so they crop the rescaled files alike."""
        if self.prefer == "mirror" and subset in MIRROR_SUBSETS:
            return {"url": f"{self.mirror_url.rstrip('/')}/{subset}/{image}.jpg", "md5": "", "source": "mirror"}
        return {"url": original_url, "md5": original_md5, "source": "flickr"}


def read_images(meta: Path, wanted: set[str], source: ImageSource, digests: dict, report: Report,
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
            images[image] = {"subset": subset, "rotation": rotation, **source.locate(image, subset, url, md5),
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


# --- downloading -----------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadSettings:
    """--workers, --retries, --backoff, --rate, --timeout, --retry-failed (their help says what each does)."""
    workers: int
    retries: int
    backoff: float
    rate: float
    timeout: float
    retry_failed: bool


class RateLimit:
    """At most `rate` requests a second over all threads: each request takes the next free slot."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self):
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        time.sleep(slot - now)


class Retry(Exception):
    """Worth another try: connection trouble, a timeout, HTTP 429 or 5xx."""


class Skip(Exception):
    """Skipped for good, with this reason."""


def fetch(url: str, part: Path, timeout: float):
    """GET url into part (redirects followed); returns (final URL, MD5 digest, SHA-256 hex)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            while chunk := response.read(1 << 16):  # a body cut short raises IncompleteRead
                out.write(chunk)
                md5.update(chunk)
                sha.update(chunk)
            return response.geturl(), md5.digest(), sha.hexdigest()
    except urllib.error.HTTPError as error:
        error.close()  # its body is not needed
        if error.code == 429 or error.code >= 500:
            raise Retry(f"HTTP {error.code}") from None
        if error.code in (403, 404, 410):
            raise Skip(f"not found (HTTP {error.code})") from None
        raise Skip(f"HTTP {error.code}") from None
    except (urllib.error.URLError, HTTPException, OSError) as error:  # refused, reset, timed out
        raise Retry(f"{type(error).__name__}: {getattr(error, 'reason', error)}") from None


def download(image: str, info: dict, folder: Path, settings: DownloadSettings, limit: RateLimit) -> tuple[str | None, bool]:
    """Fetch one image to folder/<ImageID>.jpg. Returns (None, _) when kept, else (reason,
    whether the failure is for good). Only a checked file is renamed into place."""
    part = folder / f"{image}.jpg.part"
    try:
        for attempt in range(settings.retries + 1):
            if attempt:
                time.sleep(settings.backoff * 2 ** (attempt - 1))
            limit.wait()
            try:
                final_url, md5, sha = fetch(info["url"], part, settings.timeout)
                break
            except Retry as error:
                last = error
        else:
            return f"download failed after {settings.retries + 1} attempts: {last}", False
        if "photo_unavailable" in final_url or sha in PLACEHOLDER_SHA256:
            raise Skip(PLACEHOLDER)  # Flickr redirects removed photos to a placeholder image
        if info["md5"] and base64.b64encode(md5).decode() != info["md5"]:
            raise Skip("MD5 mismatch")  # OriginalMD5 is base64 of the raw digest
        try:
            with Image.open(part) as decoded:
                decoded.load()
        except Exception as error:  # Pillow raises many kinds; the class name keeps the reason path-free
            raise Skip(f"undecodable image ({type(error).__name__})") from None
        os.replace(part, folder / f"{image}.jpg")
        return None, False
    except Skip as error:
        return str(error), True
    finally:
        part.unlink(missing_ok=True)


def download_all(wanted: list[str], images: dict, out: Path, settings: DownloadSettings, report: Report, progress: bool) -> int:
    """Download those of `wanted` that are missing, concurrently; returns how many images were fetched."""
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for part in folder.glob("*.part"):
        part.unlink()  # left by a run that was cut off
    failures_file = out / "download_failures.json"
    failures = json.loads(failures_file.read_text()) if failures_file.is_file() else {}
    todo = []
    for image in sorted(wanted):
        known = failures.get(image)
        if (folder / f"{image}.jpg").is_file():
            continue  # fetched and checked by an earlier run
        if known and known["url"] == images[image]["url"] and not settings.retry_failed:
            report.skip_image(image, known["reason"])
        else:
            todo.append(image)

    fetched, limit = 0, RateLimit(settings.rate)
    pool = ThreadPoolExecutor(settings.workers)
    try:
        futures = {pool.submit(download, image, images[image], folder, settings, limit): image for image in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="downloading", unit="img",
                           file=sys.stderr, disable=not progress):
            image = futures[future]
            reason, for_good = future.result()
            if reason is None:
                fetched += 1
                failures.pop(image, None)
            else:
                report.skip_image(image, reason)
                if for_good:
                    failures[image] = {"url": images[image]["url"], "reason": reason}
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, start nothing new
        write_atomic(failures_file, json.dumps(failures, indent=1, sort_keys=True).encode())
    return fetched


def stored_size(out: Path, image: str, report: Report) -> tuple[int, int] | None:
    """The size of a downloaded image as stored (no EXIF orientation), or None when there is none."""
    path = out / "images" / f"{image}.jpg"
    if not path.is_file():
        return None  # failed: reported while downloading
    try:
        with Image.open(path) as stored:
            return stored.size
    except Exception as error:  # Pillow raises many kinds; the class name keeps the reason path-free
        report.skip_image(image, f"undecodable image ({type(error).__name__})")
        return None


def gather(candidates: dict[str, list[Box]], images: dict, targets: dict[str, Class], cap: int, out: Path,
           settings: DownloadSettings, report: Report, progress: bool) -> tuple[dict[str, list[Box]], int]:
    """Download in ImageID order until every class has `cap` croppable boxes (0: all of them);
    returns (ImageID -> boxes to crop, images fetched). An image that fails makes room for the
    next, so a class falls short only when its candidates run out; what is taken is the first
    `cap` croppable boxes per class by (ImageID, k), however the downloads finish."""
    sizes = {image: stored_size(out, image, report) for image in candidates if (out / "images" / f"{image}.jpg").is_file()}
    fetched = 0
    while True:
        chosen, wanted = assign(candidates, targets, cap, sizes)
        if not wanted:
            break
        fetched += download_all(wanted, images, out, settings, report, progress)
        sizes.update({image: stored_size(out, image, report) for image in wanted})
    for image in sorted(candidates):  # what was left out, and why
        kept = chosen.get(image, [])
        for box in candidates[image]:
            folder = targets[box.label].folder
            if image in sizes and sizes[image] is None:
                continue  # the image failed: reported as a skipped image
            if image in sizes and pixel_box(box, *sizes[image]) is None:
                report.skip_box(box, folder, "tiny box")
            elif box not in kept:
                report.dropped["over --max-per-class"][folder] += 1
    return chosen, fetched


# --- cropping and the manifest -------------------------------------------------------

def write_atomic(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)  # only left when cut off before the rename


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


def write_manifest(out: Path, options: dict, classes: list[Class], folded: Folded | None, digests: dict, report: Report,
                   crops: list[dict]) -> dict:
    """Everything that went in and came out; no timestamps or absolute paths, so equal inputs give equal bytes.
    With --include-subclasses each class lists the labels folded into it, and labels left out as
    belonging to two requested classes are listed."""
    counts = Counter(crop["file"].split("/")[0] for crop in crops)
    entries = [asdict(c) for c in classes]
    if folded:
        for entry in entries:
            entry["subclasses"] = [{"name": folded.names.get(label, label), "label": label}
                                   for label, target in sorted(folded.targets.items())
                                   if target.folder == entry["folder"] and label != entry["label"]]
    manifest = {
        "sources": digests,
        "options": options,
        "classes": entries,
        "counts": {c.folder: counts[c.folder] for c in classes},
        "dropped": {reason: dict(per_class) for reason, per_class in report.dropped.items()},
        "skipped_images": [{"image": image, "reason": reason} for image, reason in sorted(report.images.items())],
        "skipped_boxes": sorted(report.boxes, key=lambda b: (b.get("file", ""), b.get("line", 0), b.get("image", ""), b.get("box", 0))),
        "crops": sorted(crops, key=lambda crop: crop["file"]),
        "versions": {"python": platform.python_version(), "pillow": PIL.__version__, "numpy": metadata.version("numpy")},
    }
    if folded and folded.ambiguous:
        manifest["left_out_subclasses"] = [{"name": folded.names.get(label, label), "label": label, "under": under}
                                           for label, under in sorted(folded.ambiguous.items())]
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


# --- publishing -------------------------------------------------------------------------

HOMEPAGE = "https://storage.googleapis.com/openimages/web/index.html"


def hub_licence(url: str) -> str:
    """A licence URL from the image lists as the Hub's licence id: .../licenses/by/2.0/ -> cc-by-2.0."""
    match = re.search(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)", url)
    return f"cc-{match.group(1)}-{match.group(2)}" if match else "other"


def crop_metadata(manifest: dict, images: dict, names: dict[str, str]) -> list[dict]:
    """metadata.jsonl's lines, one per crop: where it comes from and under which licence."""
    classes = {c["folder"]: c["name"] for c in manifest["classes"]}
    rows = []
    for crop in manifest["crops"]:
        info = images[crop["image"]]
        rows.append({"file_name": crop["file"], "ImageID": crop["image"], "box": crop["bbox"], "rotation": crop["rotation"],
                     "class": classes[crop["file"].split("/")[0]], "source_class": names.get(crop["label"], crop["label"]),
                     "source_label": crop["label"], "Subset": info["subset"], "downloaded_from": info["source"],
                     **info["licence"]})
    return rows


def dataset_card(repo: str, manifest: dict, rows: list[dict]) -> str:
    """The dataset card: front matter from huggingface_hub's DatasetCardData naming the licences
    and the source, then what is in it, under which terms, and how it was built."""
    from huggingface_hub import DatasetCard, DatasetCardData

    image_licences = Counter(row.get("License", "") for row in rows)
    licences = ["cc-by-4.0", *sorted({hub_licence(url) for url in image_licences} - {"cc-by-4.0"})]
    names = [c["name"] for c in manifest["classes"]]
    data = DatasetCardData(
        pretty_name=f"{' or '.join(names)} (Open Images crops)",
        license=licences,
        **({"license_name": "per-image", "license_link": "metadata.jsonl"} if "other" in licences else {}),
        task_categories=["image-classification"],
        size_categories=[next(label for limit, label in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"),
                                                         (1e6, "100K<n<1M"), (float("inf"), "n>1M")) if len(rows) < limit)],
        source_datasets=["open-images"],
        tags=["open-images", "imagefolder"],
    )
    classes = "\n".join(f"| {c['name']} | `{c['label']}` | `{c['folder']}/` | {manifest['counts'][c['folder']]} | "
                        + (", ".join(s["name"] for s in c.get("subclasses", [])) or "—") + " |" for c in manifest["classes"])
    terms = "\n".join(f"| {url or '(none given)'} | {count} |" for url, count in sorted(image_licences.items()))
    sources = "\n".join(f"| `{name}` | `{entry['sha256']}` |" for name, entry in sorted(manifest["sources"].items()))
    origins = Counter(row["downloaded_from"] for row in rows)
    text = f"""---
{data.to_yaml()}
---

# {data.pretty_name}

Boxes of {", ".join(names)} cropped out of [Open Images]({HOMEPAGE}), a folder per class
(the `imagefolder` layout: `<class>/<ImageID>_<k>.jpg`), built by `python -m training.open_images`.
`metadata.jsonl` has a line per crop: its image, its box (relative to the image's sides) and
rotation, its class and the Open Images class of the box itself, and the photo's licence and author.

| class | label | folder | crops | subclasses folded in |
|---|---|---|---|---|
{classes}

## Licence

- **Annotations** (boxes and labels): by Google LLC, under CC BY 4.0.
- **Images**: each crop is part of a photo under its own licence, recorded per crop in
  `metadata.jsonl` (`License`, `Author`, `AuthorProfileURL`, `Title`, `OriginalURL`,
  `OriginalLandingURL`). Open Images lists its images as CC BY 2.0 and says: "we make no
  representations or warranties regarding the license status of each image and you should verify
  the license for each image yourself". Attribute the authors when you share crops.

| licence, as the image list gives it | crops |
|---|---|
{terms}

## Source and build

Open Images metadata files, with their SHA-256 (`manifest.json` has these, the build options,
every skipped image and box with its reason, and every crop's SHA-256):

| file | SHA-256 |
|---|---|
{sources}

Images downloaded from {", ".join(f"{where} ({count})" for where, count in sorted(origins.items())) or "nowhere"}:
`mirror` is the Common Visual Data Foundation's copy (rescaled to at most 1024 px on the longest
side), `flickr` the photo's OriginalURL.

## Use

Pin a commit, so a model names its data exactly:

```
python -m training.sandwich --data hf://datasets/{repo}@COMMIT --out models/sandwich
```
"""
    return str(DatasetCard(text))


def publish(out: Path, repo: str, private: bool, manifest: dict, images: dict, names: dict[str, str]) -> str:
    """--push-to-hub: the crops, metadata.jsonl, manifest.json and the card as a Hub dataset repo."""
    rows = crop_metadata(manifest, images, names)
    files: dict = {crop["file"]: out / "images_cropped" / crop["file"] for crop in manifest["crops"]}
    files["metadata.jsonl"] = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
    files["manifest.json"] = (out / "manifest.json").read_bytes()
    files["README.md"] = dataset_card(repo, manifest, rows).encode()
    counts = ", ".join(f"{count} {folder}" for folder, count in manifest["counts"].items())
    commit = push_dataset(repo, files, private, f"Open Images crops: {counts}")
    print(f"Pushed to datasets/{repo} at commit {commit}. Train on it, pinned:")
    print(f"  python -m training.sandwich --data {HUB_DATASETS}{repo}@{commit} --out models/sandwich")
    return commit


# --- the command -----------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Crop Open Images boxes of some classes into a folder-per-class dataset.")
    parser.add_argument("--classes", nargs="+", help="display names, e.g. Hamburger Sandwich (any case), or label ids (/m/...)")
    parser.add_argument("--meta", required=True, type=Path, help="folder with the Open Images metadata CSVs (and the hierarchy JSON)")
    parser.add_argument("--out", type=Path, help="output folder (images/, images_cropped/, manifest.json)")
    parser.add_argument("--include-subclasses", action="store_true",
                        help=f"gather each class's subclasses (Subcategory in {HIERARCHY_FILE}, recursively) into its folder")
    parser.add_argument("--list-classes", nargs="?", const=ROOT_NAME, metavar="NAME",
                        help="print the class tree below NAME (default: all of it) with box counts, and exit")
    parser.add_argument("--source", choices=("mirror", "flickr"), default="mirror",
                        help="mirror: the CVDF's mirror for the subsets it serves (train, validation, test), Flickr's "
                             "OriginalURL for the rest; flickr: OriginalURL always")
    parser.add_argument("--mirror-url", default=MIRROR_URL, help="the mirror's base URL; images are {base}/{subset}/{ImageID}.jpg")
    parser.add_argument("--subset", nargs="+", help="keep only images of these Subset values (train, validation, test)")
    parser.add_argument("--drop-group-of", action="store_true", help="drop boxes around groups of objects (IsGroupOf=1)")
    parser.add_argument("--drop-depiction", action="store_true", help="drop drawings, toys, ... (IsDepiction=1)")
    parser.add_argument("--min-box-size", type=float, default=0.0, help="drop boxes narrower or lower than this share of the image")
    parser.add_argument("--max-per-class", type=int, default=0,
                        help="this many boxes per class (0: all): the first by ImageID that download and crop")
    parser.add_argument("--workers", type=int, default=8, help="concurrent downloads")
    parser.add_argument("--retries", type=int, default=4, help="retries on connection errors, timeouts, 429 and 5xx")
    parser.add_argument("--backoff", type=float, default=0.5, help="seconds before the first retry; doubles each time")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second over all workers (0: no limit)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--retry-failed", action="store_true", help="try again images that failed for good in earlier runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the crops as this Hub dataset repo (imagefolder layout)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    args = parser.parse_args(argv)
    if args.private and not args.push_to_hub:
        parser.error("--private goes with --push-to-hub REPO")
    if args.list_classes is None and not (args.classes and args.out):
        parser.error("--classes and --out are needed (or --list-classes to see the classes)")
    if not args.mirror_url.startswith(("http://", "https://")):
        parser.error(f"--mirror-url must be an http(s) URL, not {args.mirror_url!r}")
    if args.workers < 1 or args.retries < 0 or args.max_per_class < 0 or not 0.0 <= args.min_box_size < 1.0:
        parser.error("need --workers >= 1, --retries >= 0, --max-per-class >= 0 and 0 <= --min-box-size < 1")
    return args


def list_classes(meta: Path, name: str, progress: bool) -> list[str]:
    """--list-classes: the tree below the class `name` with the box counts of every annotation file."""
    digests = {}
    hierarchy = need_hierarchy(read_hierarchy(meta, digests), "--list-classes", meta)
    names = {ROOT_LABEL: ROOT_NAME, **read_class_names(meta, digests)}
    start = resolve_classes([name], names)[0]
    if start.label not in hierarchy:
        raise SystemExit(f"{start.name} ({start.label}) is not in {HIERARCHY_FILE}")
    return class_tree(hierarchy, names, count_boxes(meta, digests, progress), start.label)


def main(argv=None) -> dict:
    args = parse_args(argv)
    progress = not args.quiet
    if args.list_classes is not None:
        lines = list_classes(args.meta, args.list_classes, progress)
        print("\n".join(lines))
        return {"tree": lines}
    filters = BoxFilters(drop_group_of=args.drop_group_of, drop_depiction=args.drop_depiction, min_box_size=args.min_box_size)
    selection = Selection(subset=frozenset(args.subset or ()), max_per_class=args.max_per_class)
    settings = DownloadSettings(workers=args.workers, retries=args.retries, backoff=args.backoff, rate=args.rate,
                                timeout=args.timeout, retry_failed=args.retry_failed)
    # The manifest records the command line as parsed, less the paths (so that equal inputs give
    # equal bytes) and what changes nothing built.
    options = {k: v for k, v in vars(args).items() if k not in ("meta", "out", "quiet", "list_classes", "push_to_hub", "private")}

    digests, report = {}, Report()
    names = read_class_names(args.meta, digests)
    classes = resolve_classes(args.classes, names)
    folded = None
    if args.include_subclasses:
        hierarchy = need_hierarchy(read_hierarchy(args.meta, digests), "--include-subclasses", args.meta)
        folded = fold_subclasses(classes, hierarchy, names)
        for label, under in folded.ambiguous.items():
            print(f"Left out {names.get(label, label)} ({label}): it is under both {' and '.join(under)}", file=sys.stderr)
    targets = folded.targets if folded else {c.label: c for c in classes}
    boxes = read_boxes(args.meta, targets, filters, digests, report, progress)
    source = ImageSource(prefer=args.source, mirror_url=args.mirror_url)
    images = read_images(args.meta, {box.image for box in boxes}, source, digests, report, progress)
    candidates = select(boxes, images, targets, selection.subset, report)
    chosen, fetched = gather(candidates, images, targets, selection.max_per_class, args.out, settings, report, progress)
    crops = crop_all(chosen, images, args.out, classes, targets, report, progress)
    manifest = write_manifest(args.out, options, classes, folded, digests, report, crops)
    summary = {"counts": manifest["counts"], "crops": len(crops),
               "images": len(chosen), "fetched": fetched, "skipped_images": len(report.images),
               "skipped_boxes": len(report.boxes), "manifest": str(args.out / "manifest.json")}
    if args.push_to_hub:
        summary["hub"] = {"repo": args.push_to_hub,
                          "commit": publish(args.out, args.push_to_hub, args.private, manifest, images, names)}
    if not args.quiet:
        print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
