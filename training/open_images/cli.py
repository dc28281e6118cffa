"""The command: python -m training.open_images (the package docstring says what it builds)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from training.open_images.classes import NO_FOLDER, Class, read_class_names, resolve_classes
from training.open_images.cropping import crop_all
from training.open_images.downloading import DownloadSettings, gather
from training.open_images.hierarchy import (
    HIERARCHY_FILE,
    ROOT_LABEL,
    ROOT_NAME,
    class_tree,
    count_boxes,
    fold_subclasses,
    need_hierarchy,
    read_hierarchy,
)
from training.open_images.http_client import RETRY_AFTER_MAX
from training.open_images.hub_push import publish
from training.open_images.manifest import write_manifest
from training.open_images.origins import MIRROR_URL, ImageOrigin
from training.open_images.report import Report
from training.open_images.selection import BoxFilters, Selection, read_boxes, read_images, select


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.open_images",
                                     description="Crop Open Images boxes of some classes into a folder-per-class dataset.")
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
    parser.add_argument("--retries", type=int, default=4,
                        help="retries of an image, of every kind together: connection errors, timeouts, a body cut off, 429 and "
                             f"5xx (after a 429 or 503 the wait is its Retry-After, up to {RETRY_AFTER_MAX} s)")
    parser.add_argument("--backoff", type=float, default=0.5, help="seconds before the first retry; doubles each time")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second over all workers (0: no limit)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to connect, and to wait for each read")
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


def empty_build(classes: list[Class], report: Report, manifest: Path) -> str:
    """Why the build stops with an error: an empty dataset is never a success, nor pushed."""
    reasons = Counter(report.images.values()).most_common(1)
    common = f", most of them: {reasons[0][0]} ({reasons[0][1]})" if reasons else ""
    return (f"The dataset is empty: no box of {', '.join(c.name for c in classes)} was cropped. "
            f"{len(report.images)} images were skipped{common}; every reason is in {manifest}")


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
    classes = []
    for c in resolve_classes(args.classes, names):
        if c.folder:
            classes.append(c)
        else:  # a name such as '..' would put its crops beside the dataset
            report.refuse_class(c.name, c.label, NO_FOLDER)
            print(f"Skipped class {c.name!r} ({c.label}): its {NO_FOLDER}", file=sys.stderr)
    if not classes:
        raise SystemExit("No class left to build: " + ", ".join(args.classes) + f" ({NO_FOLDER})")
    folded = None
    if args.include_subclasses:
        hierarchy = need_hierarchy(read_hierarchy(args.meta, digests), "--include-subclasses", args.meta)
        folded = fold_subclasses(classes, hierarchy, names)
        for label, under in folded.ambiguous.items():
            print(f"Left out {names.get(label, label)} ({label}): it is under both {' and '.join(under)}", file=sys.stderr)
    targets = folded.targets if folded else {c.label: c for c in classes}
    boxes = read_boxes(args.meta, targets, filters, digests, report, progress)
    origin = ImageOrigin(prefer=args.source, mirror_url=args.mirror_url)
    images = read_images(args.meta, {box.image for box in boxes}, origin, digests, report, progress)
    candidates = select(boxes, images, targets, selection.subset, report)
    chosen, fetched = gather(candidates, images, targets, selection.max_per_class, args.out, settings, report, progress)
    crops = crop_all(chosen, images, args.out, classes, targets, report, progress)
    manifest = write_manifest(args.out, options, classes, folded, digests, report, crops)
    if report.refused:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(report.refused.items()))
        print(f"Refused {sum(report.refused.values())} unsafe rows ({kinds}): listed in {args.out / 'manifest.json'}", file=sys.stderr)
    if not crops:
        raise SystemExit(empty_build(classes, report, args.out / "manifest.json"))
    summary = {"counts": manifest["counts"], "crops": len(crops),
               "images": len(chosen), "fetched": fetched, "skipped_images": len(report.images),
               "skipped_boxes": len(report.boxes), "manifest": str(args.out / "manifest.json")}
    if report.refused:
        summary["refused"] = sum(report.refused.values())
    if args.push_to_hub:
        summary["hub"] = {"repo": args.push_to_hub,
                          "commit": publish(args.out, args.push_to_hub, args.private, manifest, images, names)}
    if not args.quiet:
        print(json.dumps(summary, indent=1))
    return summary
