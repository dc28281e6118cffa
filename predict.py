"""Predictions over many images into one CSV: the app's model and decisions, without the page.

    python -m predict TASK PATH... --out FILE.csv [--models-dir DIR] [--hub-config FILE]
                      [--threshold T] [--tilt-by eyes|network] [--batch-size 32] [--workers N]

PATH is an image, a folder (searched recursively; hidden files left out) or a `.txt` list of
paths, one per line (blank lines and lines starting with # skipped; relative paths are relative
to the list's folder), as the hashtag course's prediction script reads. The model is resolved
as the app resolves it (local bundle, pinned Hub repo, demo), and each image goes through the
tab's own code: the same decoding and resizing, and the task's `from_scores` / `from_output`
(what the tab's `predict` calls) for the decision. Images are decoded in a thread pool while
the network runs on batches.

One row per image, in the order given; per face for age & gender (one row for a picture without
a face, noted, as the tab does); caries also writes each class's mask as a PNG in
`<FILE>_masks/` beside the CSV. A file that is not a usable image gets its row with the reason
in `error`; nothing stops the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from core.bundle import first  # noqa: E402

LIST_SUFFIX = ".txt"


# --- which images -------------------------------------------------------------------------------

def image_paths(arguments, leave_out=()) -> list[Path]:
    """Every file named by `arguments` (files, folders searched recursively, `.txt` lists), in the
    order given, each once; `leave_out` are paths never to read (this run's own outputs). A path
    that does not exist is kept: its row will say so."""
    leave_out = [Path(p).resolve() for p in leave_out]
    found, seen = [], set()

    def add(path: Path):
        key = path.resolve()
        if key not in seen and not any(key == p or p in key.parents for p in leave_out):
            seen.add(key)
            found.append(path)

    def expand(path: Path, from_list: bool = False):
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path).parts
                if file.is_file() and not any(part.startswith(".") for part in relative):
                    add(file)
        elif path.suffix.lower() == LIST_SUFFIX and path.is_file() and not from_list:
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line)
                    expand(entry if entry.is_absolute() else path.parent / entry, from_list=True)
        else:
            add(path)

    for argument in arguments:
        expand(Path(argument))
    return found


# --- one predictor per kind of task --------------------------------------------------------------
# prepare(path) runs in the thread pool (decoding, resizing); forward(prepared list) runs the
# network once on the batch; rows(index, path, prepared, output) are the image's CSV rows.

class Classifier:
    """Tasks whose network scores one resized image (KIND "classifier"): their `from_scores` is what
    the tab's predict returns for those scores, {label: score} first, then what the task names in
    CSV_EXTRAS (the hashtag line, the verdict, the dog probability), one column each."""

    def __init__(self, task, bundle, threshold=None, **_):
        self.task, self.bundle = task, bundle
        self.options = () if threshold is None else (threshold,)
        self.extras = tuple(getattr(task, "CSV_EXTRAS", ()))
        self.columns = ["path", "error", "label", "score", "scores", *self.extras]

    def prepare(self, path):
        from core.preprocess import model_input

        return model_input(path, self.bundle.input_size)

    def forward(self, batch):
        outputs = self.bundle.network("classifier")(np.stack(batch))
        return [first(outputs, i) for i in range(len(batch))]

    def rows(self, index, path, prepared, output):
        result = self.task.from_scores(self.bundle, output, *self.options)
        scores, *extras = result if isinstance(result, tuple) else (result,)
        label, score = next(iter(scores.items()))
        row = {"label": label, "score": f"{score:.6f}",
               "scores": json.dumps({k: round(float(v), 6) for k, v in scores.items()}, ensure_ascii=False)}
        row.update({name: "" if value is None else (f"{value:.6f}" if isinstance(value, float) else value)
                    for name, value in zip(self.extras, extras)})
        return [row]


class Segmenter:
    """Caries: the radiograph letterboxed, the masks back at its own size, areas per class; each
    class's mask written as a PNG (white where marked)."""

    def __init__(self, task, bundle, threshold=None, masks_dir: Path | None = None, **_):
        self.task, self.bundle, self.threshold, self.masks_dir = task, bundle, threshold, masks_dir
        area_names = bundle.labels + (["Any lesion"] if len(bundle.labels) > 1 else [])
        self.columns = (["path", "error", "width", "height", "threshold"]
                        + [f"{kind} {name}" for name in area_names for kind in ("pixels", "percent")]
                        + [f"mask {label}" for label in bundle.labels] + ["summary"])

    def prepare(self, path):
        from core.images import load_image
        from core.segmentation import letterbox

        picture = load_image(path)
        pixels, box = letterbox(picture, self.bundle.input_size[0])
        return picture, pixels, box

    def forward(self, batch):
        return self.bundle.network("segmenter")(np.stack([pixels for _, pixels, _ in batch]))

    def rows(self, index, path, prepared, output):
        from PIL import Image

        picture, _, box = prepared
        masks, table, summary = self.task.from_output(self.bundle, picture, box, output, self.threshold)
        threshold = self.bundle.metadata["thresholds"]["global"] if self.threshold is None else self.threshold
        row = {"width": picture.width, "height": picture.height, "threshold": threshold, "summary": summary}
        for name, pixels, percent in table:
            row[f"pixels {name}"], row[f"percent {name}"] = pixels, percent
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        for k, label in enumerate(self.bundle.labels):
            file = self.masks_dir / f"{index:06d}_{_safe(Path(path).stem)}_{_safe(label)}.png"
            Image.fromarray(masks[..., k].astype(np.uint8) * 255, "L").save(file)
            row[f"mask {label}"] = file.relative_to(self.masks_dir.parent).as_posix()
        return [row]


class Faces:
    """Age & gender: the tab's `analyse` (faces found, tilts, both networks on all of a picture's
    faces in one batch) runs whole in the thread pool; one row per face, as the tab's `faces`."""

    def __init__(self, task, bundle, tilt_by=None, **_):
        self.task, self.bundle, self.tilt_by = task, bundle, tilt_by
        self.columns = (["path", "error", "face", "left", "top", "width", "height", "confidence", "tilt_network",
                         "tilt_eyes", "tilt_used", "tilt_by", "gender"] + [f"P({label})" for label in bundle.labels]
                        + ["age", "age_rmse", "note"])

    def prepare(self, path):
        from core.images import load_image, upright_size

        picture = load_image(path)
        results = self.task.analyse(self.bundle, picture, self.tilt_by)
        upload = upright_size(picture) or picture.size
        return results, (upload[0] / picture.width, upload[1] / picture.height)

    def forward(self, batch):
        return [None] * len(batch)

    def rows(self, index, path, prepared, output):
        results, scale = prepared
        if not results:  # the tab's rule: no face, no gender or age
            return [{"note": self.task.NO_FACE}]
        rows = []
        for number, result in enumerate(results, 1):
            record = self.task.face_record(self.bundle, result, scale)
            row = {"face": number, **dict(zip(("left", "top", "width", "height"), record["box"])),
                   **{key: record[key] for key in ("confidence", "tilt_network", "tilt_eyes", "tilt_used", "tilt_by",
                                                   "age", "age_rmse")}, "note": ""}
            gender = record["gender"]
            row["gender"] = max(gender, key=gender.get)
            row.update({f"P({label})": probability for label, probability in gender.items()})
            rows.append(row)
        return rows


KINDS = {"classifier": Classifier, "segmentation": Segmenter, "faces": Faces}


def predictor(task, bundle, **options):
    """The predictor of the task's KIND (its module says which)."""
    return KINDS[task.KIND](task, bundle, **options)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "image"


# --- the run --------------------------------------------------------------------------------------

def predict_files(task, bundle, paths, out: Path, batch_size: int = 32, workers: int | None = None,
                  threshold: float | None = None, tilt_by: str | None = None, progress: bool = True) -> dict:
    """Write the CSV of `paths` (already listed, see `image_paths`) for `task` with `bundle`; returns
    {"images", "rows", "errors"}. Rows are written as their batch finishes."""
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chosen = predictor(task, bundle, threshold=threshold, tilt_by=tilt_by,
                       masks_dir=out.with_name(out.stem + "_masks"))
    counts = {"images": 0, "rows": 0, "errors": 0}
    workers = workers or min(8, os.cpu_count() or 1)
    with out.open("w", newline="", encoding="utf-8") as handle, ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(paths), unit="image", disable=not progress, file=sys.stderr) as bar:
        writer = csv.DictWriter(handle, chosen.columns, extrasaction="ignore")
        writer.writeheader()

        def write(rows):
            writer.writerows(rows)
            counts["rows"] += len(rows)

        batch = []

        def flush():
            outputs = chosen.forward([prepared for _, _, prepared in batch]) if batch else []
            for (index, path, prepared), output in zip(batch, outputs):
                try:
                    write([{"path": str(path), **row} for row in chosen.rows(index, path, prepared, output)])
                except Exception as error:  # one image's post-processing never stops the run
                    write([{"path": str(path), "error": _reason(error)}])
                    counts["errors"] += 1
            handle.flush()
            bar.update(len(batch))
            batch.clear()

        for index, path, prepared, error in _prepared(pool, chosen.prepare, paths, window=2 * batch_size):
            counts["images"] += 1
            if error:
                write([{"path": str(path), "error": error}])
                counts["errors"] += 1
                bar.update(1)
                continue
            batch.append((index, path, prepared))
            if len(batch) == batch_size:
                flush()
        flush()
    return counts


def _prepared(pool, prepare, paths, window: int):
    """(index, path, prepared or None, error or "") in order, at most `window` images ahead: memory
    stays bounded however many images there are."""

    def attempt(path):
        try:
            return prepare(path), ""
        except Exception as error:  # any unreadable file becomes its row's reason
            return None, _reason(error)

    pending = deque()
    for index, path in enumerate(paths):
        pending.append((index, path, pool.submit(attempt, path)))
        if len(pending) >= window:
            index_, path_, future = pending.popleft()
            yield (index_, path_, *future.result())
    while pending:
        index_, path_, future = pending.popleft()
        yield (index_, path_, *future.result())


def _reason(error: Exception) -> str:
    from core.images import ImageError

    return str(error) if isinstance(error, ImageError) else f"{type(error).__name__}: {error}"


def main(argv=None):
    from tasks import TASKS

    names = [task.NAME for task in TASKS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=names)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images, folders (recursive), or .txt lists of paths")
    parser.add_argument("--out", required=True, type=Path, help="the CSV to write")
    parser.add_argument("--models-dir", help="root of the local bundles (default: models/, or $MODELS_DIR)")
    parser.add_argument("--hub-config", help="Hub pins per task (default: models/hub.json, or $HUB_CONFIG)")
    parser.add_argument("--threshold", type=float,
                        help="the tab's threshold where it has one (" + ", ".join(
                            t.NAME for t in TASKS if "threshold" in getattr(t, "PREDICT_OPTIONS", ())) +
                        "; default: the tuned one)")
    parser.add_argument("--tilt-by", choices=["eyes", "network"],
                        help="age & gender: straighten faces by (default: the bundle's more accurate)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--workers", type=int, help="decoding threads (default: the CPU count, at most 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    task = TASKS[names.index(args.task)]
    for option in ("threshold", "tilt_by"):  # a task names the options its tab has (PREDICT_OPTIONS)
        if getattr(args, option) is not None and option not in getattr(task, "PREDICT_OPTIONS", ()):
            parser.error(f"--{option.replace('_', '-')} does not apply to {task.NAME}")

    from core import source

    resolved = source.resolve(task.NAME, task.TRAIN_COMMAND, source.models_dir(args.models_dir),
                              source.read_hub_config(args.hub_config), task.METADATA)
    for notice in resolved.notices:
        print(notice, file=sys.stderr)
    if resolved.bundle is None:
        return 1
    print(f"{task.NAME}: model from {resolved.origin}", file=sys.stderr)
    if resolved.bundle.is_demo:
        print("Demo model trained on synthetic data — its predictions mean nothing.", file=sys.stderr)

    paths = image_paths(args.paths, leave_out=[args.out, args.out.with_name(args.out.stem + "_masks")])
    counts = predict_files(task, resolved.bundle, paths, args.out, args.batch_size, args.workers, args.threshold,
                           args.tilt_by, progress=not args.quiet)
    print(f"{counts['images']} images, {counts['rows']} rows, {counts['errors']} not predicted (see the error "
          f"column): {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
