"""Annotations to masks: VoTT, LabelMe or COCO polygons and rectangles into class masks.

    python -m training.caries_masks --annotations FILE_OR_DIR --images DIR --out DIR [--classes caries,filling]

FILE_OR_DIR is one JSON file or a folder of them (searched recursively), in any mix of
VoTT's JSON export (or its per-asset files), LabelMe's one-file-per-image JSON and COCO
instances JSON; the format is recognised from each file's content. Images are looked up
by file name in --images, then by the path the export gives, in --images or relative to
the annotation file (LabelMe's embedded imageData comes first). Only files inside --images
or the annotation file's own folder are ever read (links followed): an absolute path, or one
whose `..` leads elsewhere, is reported as a missing image, not read. The output is the
layout `python -m training.caries --data DIR` reads:

    OUT/images/<stem>.<ext>   the annotated images, copied byte for byte (embedded LabelMe
                              images are written as they were embedded)
    OUT/masks/<stem>.png      8-bit integer classes, lossless PNG: 0 = background, i = classes[i]
    OUT/masks/<stem>.npy      only for images where shapes of different classes overlap:
                              one-hot uint8 (H, W, K + 1), channel 0 = no class
    OUT/classes.json          {"classes": ["background", "caries", ...]}: pixel value -> name
    OUT/report.json           what was converted and every problem, by kind

Masks are never JPEG: lossy compression changes class values at shape borders. The
rasterisation convention (which pixels an edge covers) is in training/datasets/annotations.py;
docs/data_formats.md lists what each format may hold and what is reported.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image

from core.images import ImageError, load_image
from training.datasets.annotations import (
    BACKGROUND,
    AnnotationError,
    Export,
    ImageAnnotation,
    read_export,
    shapes_to_masks,
)
from training.datasets.report import report_problems

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
MAX_CLASSES = 255  # one byte per pixel
NO_LIMIT = 1 << 30


def find_annotation_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    raise SystemExit(f"--annotations {path}: no such file or folder")


def class_list(exports: list[Export], given: list[str] | None) -> list[str]:
    """Class names in output order: --classes, else the tags the exports declare (VoTT tags, COCO
    categories) in order, else every tag seen (LabelMe declares none), sorted."""
    if given:
        return given
    declared = [t for e in exports for t in e.declared_tags]
    if declared:
        return list(dict.fromkeys(declared))
    seen = {shape.tags[0] for e in exports for a in e.images for shape in a.shapes if shape.tags}
    return sorted(seen, key=str.lower)


def locate_image(annotation: ImageAnnotation, images: Path | None, json_dir: Path):
    """The image's bytes and file name, or None and why it is missing.

    Embedded data first (what the annotator saw), then --images/<file name>, then the path as
    the export writes it, in --images and relative to the annotation file, then <file name>
    beside the annotation file. A candidate outside --images and `json_dir` (after `..` and
    links) is never read: the export names it, the user did not.
    """
    reference = annotation.image.replace("\\", "/")
    name = PurePosixPath(reference).name
    if annotation.image_data:
        return annotation.image_data, name, None
    absolute = bool(PureWindowsPath(reference).anchor)  # /x, C:/x, //server/x: the annotator's disk
    as_written = [] if absolute else [reference]
    candidates = [images / p for p in [name, *as_written]] if images else []
    candidates += [json_dir / p for p in [*as_written, name]]
    roots = [_real(folder) for folder in (images, json_dir) if folder is not None]
    outside = absolute
    for candidate in candidates:
        real = _real(candidate)
        if real is None or not any(os.path.commonpath([real, root]) == root for root in roots if root):
            outside = True
            continue
        if os.path.isfile(real):
            try:
                return Path(real).read_bytes(), name, None
            except OSError as error:
                return None, name, f"{name} could not be read ({error.strerror or error})"
    searched = (f"in {images} nor " if images else "") + "beside the annotation file"
    if outside:
        return None, name, (f"{annotation.image} leads outside --images and the annotation file's folder, so it "
                            f"is not read; {name} is not {searched}")
    return None, name, f"{name} not found {searched}"


def _real(path: Path) -> str | None:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # a NUL in the name, a link loop
        return None


def convert(annotations: Path, images: Path | None, out: Path, classes: list[str] | None = None) -> dict:
    """Read every annotation file, rasterise, write the dataset layout, and return the report."""
    files = find_annotation_files(annotations)
    report: dict = {"unreadable_annotation_files": [], "missing_images": [], "unreadable_images": [],
                    "images_without_annotations": [], "images_not_annotated": [], "duplicate_images": [],
                    "overlapping_classes": []}
    exports = []
    for file in files:
        try:
            export = read_export(file)
        except AnnotationError as error:
            report["unreadable_annotation_files"].append(str(error))
            continue
        exports.append((file, export))
        for kind, entries in export.problems.items():
            report.setdefault(kind, []).extend(entries)
    if not exports:
        raise SystemExit(f"No readable annotation file in {annotations}: "
                         + ("; ".join(report["unreadable_annotation_files"][:3]) or "no .json file found"))
    names = class_list([e for _, e in exports], classes)
    if not names:
        raise SystemExit("No class found: the annotations carry no tags; name the classes with --classes")
    if len(names) > MAX_CLASSES:
        raise SystemExit(f"{len(names)} classes; at most {MAX_CLASSES} fit an 8-bit mask")

    if out.exists():
        shutil.rmtree(out / "images", ignore_errors=True)
        shutil.rmtree(out / "masks", ignore_errors=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    written, used_names = {}, set()
    for file, export in exports:
        for annotation in export.images:
            content, name, missing = locate_image(annotation, images, file.parent)
            if content is None:
                report["missing_images"].append(f"{annotation.where}: {missing}")
                continue
            try:
                picture = load_image(content, max_side=NO_LIMIT)
            except ImageError as error:
                report["unreadable_images"].append(f"{annotation.where}: {str(error).replace('the upload', name)}")
                continue
            stem = Path(name).stem
            if stem in written:
                report["duplicate_images"].append(f"{annotation.where}: {name} again (first from {written[stem]}); skipped")
                continue
            result = shapes_to_masks(annotation, picture.size, names)
            for kind, entries in result.problems.items():
                report.setdefault(kind, []).extend(entries)
            if not annotation.shapes:
                report["images_without_annotations"].append(
                    f"{annotation.where}: no shape; written with an all-background mask")
            suffix = Path(name).suffix.lower()
            if annotation.image_data or suffix not in IMAGE_SUFFIXES:
                suffix = "." + (Image.open(io.BytesIO(content)).format or "png").lower().replace("jpeg", "jpg")
            (out / "images" / f"{stem}{suffix}").write_bytes(content)
            Image.fromarray(result.classes, mode="L").save(out / "masks" / f"{stem}.png", format="PNG")
            if result.overlap_pixels:
                np.save(out / "masks" / f"{stem}.npy", result.coverage.astype(np.uint8))
                report["overlapping_classes"].append(
                    f"{annotation.where}: {result.overlap_pixels} pixels in several classes; the PNG keeps the "
                    f"shape drawn last, {stem}.npy keeps all")
            written[stem] = annotation.where
            used_names.add(name)
    if images and images.is_dir():
        for path in sorted(images.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.name not in used_names and path.stem not in written:
                report["images_not_annotated"].append(f"{path.name}: in --images but in no annotation file; not written")
    classes_out = [BACKGROUND, *names]
    (out / "classes.json").write_text(json.dumps({"classes": classes_out}, indent=2, ensure_ascii=False) + "\n")
    summary = {"annotation_files": [str(f.relative_to(annotations)) if annotations.is_dir() else f.name for f, _ in exports],
               "formats": sorted({e.format for _, e in exports}), "classes": classes_out, "images_written": len(written)}
    print(f"{len(written)} images with masks written to {out}; classes: {', '.join(names)} "
          f"(formats: {', '.join(summary['formats'])})")
    report = report_problems(report)
    (out / "report.json").write_text(json.dumps({**summary, "report": report}, indent=2, ensure_ascii=False) + "\n")
    return {**summary, "report": report}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True, type=Path, help="a VoTT/LabelMe/COCO JSON file or a folder of them")
    parser.add_argument("--images", type=Path, help="the folder holding the annotated images")
    parser.add_argument("--out", required=True, type=Path, help="where to write images/, masks/, classes.json")
    parser.add_argument("--classes", help="comma-separated class names in output order (default: from the annotations)")
    args = parser.parse_args(argv)
    if args.images is not None and not args.images.is_dir():
        raise SystemExit(f"--images {args.images}: no such folder")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    return convert(args.annotations, args.images, args.out, classes)


if __name__ == "__main__":
    main(sys.argv[1:])
