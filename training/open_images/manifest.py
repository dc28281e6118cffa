"""manifest.json: what went into a build, what came out, and what was left out and why."""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import PIL

from core.atomic import write_atomic
from training.open_images.report import Report

if TYPE_CHECKING:  # annotations only
    from training.open_images.classes import Class
    from training.open_images.hierarchy import Folded


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
