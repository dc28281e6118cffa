"""manifest.json: what went into a build, what came out, and what was left out and why."""

from __future__ import annotations

import json
import platform
from collections import Counter, defaultdict
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import PIL

from training.open_images.atomic import write_atomic

if TYPE_CHECKING:  # annotations only: selection imports Report from here
    from training.open_images.classes import Class
    from training.open_images.hierarchy import Folded
    from training.open_images.selection import Box


class Report:
    """What was left out, and why: goes into the manifest. Rows refused as unsafe (an ImageID
    that is no ImageID, a class name that is no folder name, a URL that is not http(s)) are
    listed with the rest and counted by kind in `refused`."""

    def __init__(self):
        self.images: dict[str, str] = {}
        self.boxes: list[dict] = []
        self.classes: list[dict] = []
        self.dropped: dict[str, Counter] = defaultdict(Counter)  # reason -> class folder -> boxes
        self.refused: Counter = Counter()  # kind -> rows

    def skip_image(self, image: str, reason: str):
        self.images.setdefault(image, reason)  # the first reason is the real one

    def skip_box(self, box: Box, folder: str, reason: str):
        self.boxes.append({"image": box.image, "box": box.k, "class": folder, "reason": reason})

    def skip_row(self, file: str, line: int, reason: str):
        self.boxes.append({"file": file, "line": line, "reason": reason})

    def refuse_row(self, file: str, line: int, kind: str, reason: str):
        self.skip_row(file, line, reason)
        self.refused[kind] += 1

    def refuse_image(self, image: str, kind: str, reason: str):
        if image not in self.images:  # once per image, however many boxes it has
            self.images[image] = reason
            self.refused[kind] += 1

    def refuse_class(self, name: str, label: str, kind: str):
        self.classes.append({"name": name, "label": label, "reason": kind})
        self.refused[kind] += 1


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
    if report.classes:  # these keys only when there is something to say: other manifests stay as they were
        manifest["skipped_classes"] = report.classes
    if report.refused:
        manifest["refused"] = dict(sorted(report.refused.items()))
    if folded and folded.ambiguous:
        manifest["left_out_subclasses"] = [{"name": folded.names.get(label, label), "label": label, "under": under}
                                           for label, under in sorted(folded.ambiguous.items())]
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest
