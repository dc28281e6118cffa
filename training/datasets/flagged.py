"""Flagged corrections, as the app's Flag button writes them, read for a recipe's `--extra-data`.

The folder is a Hugging Face `imagefolder` for one task:

    FOLDER/images/<id>.<ext>
    FOLDER/metadata.jsonl    one JSON object per line:
        {"file_name": "images/<id>.<ext>", "task": "dog_breed", "answer": ..., "correction": ...,
         "comment": "...", "origin": "...", "time": "..."}

`correction` is what the picture should have been given: a class name (single-label tasks), a
list of label names (multi-label tasks), {"gender": "Female" | "Male", "age": years or null}
(age & gender), or null (no correction: nothing to learn from). Only `file_name`, `task` and
`correction` are read; `answer`, `comment`, `origin` and `time` are for people.

A flag only ever joins the training split, so held-out figures stay comparable with a run
without flags. Lines that cannot be used are skipped and counted by reason (DropReport), never
fatal:

- malformed_json: the line is not JSON (named with its line number);
- malformed_row: not an object, or no usable `file_name` (missing, or leaving the folder);
- other_task: flagged on another task's tab;
- no_correction: `correction` is null (or, for age & gender, both gender and age are);
- malformed_correction: a correction of the wrong shape for the task;
- empty_correction: a multi-label correction with no label (the datasets have no such image);
- unknown_label: a label the dataset does not have (for multi-label, any one of the list: the
  correction says "exactly these", which the model cannot be told without it);
- age_out_of_range: an age outside 0..100, the datasets' range;
- missing_image, unreadable_image: the picture is not there, or not an image;
- superseded: a later line corrects the same picture (the latest correction wins);
- held_out_image: byte for byte a validation or test image (the app's examples are held-out
  images: training on one would leak it into the figures), found by the recipe after its scan.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.flags import METADATA  # the app writes the folder: one name for its table
from core.images import ImageError, open_image
from training.datasets.faces import MAX_AGE, MIN_AGE
from training.datasets.report import DropReport
from training.inputs import fingerprint

KINDS = ("single", "multi", "age_gender")


class Unusable(ValueError):
    """A flag that cannot be used: the report's reason, and what to show of it."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Flag:
    """One usable flagged correction. `correction` is a class index (single), a tuple of label
    indices (multi), or (gender index or None, age or None) (age & gender)."""

    line: int
    path: Path
    correction: object


@dataclass
class Flagged:
    """The usable flags of one folder, what was skipped, and the folder's content hash."""

    folder: Path
    flags: list[Flag]
    lines: int
    dropped: DropReport = field(default_factory=DropReport)
    sha256: str = ""  # over metadata.jsonl and the pictures used: a resumed run must see the same flags

    @property
    def files(self) -> list[Path]:
        """What a recipe adds to its content-hash scan besides the pictures."""
        return [self.folder / METADATA]

    def leave_out_held_out(self, digests: dict, held_out) -> None:
        """Drop the flags whose picture is byte for byte one of the `held_out` files (`digests`:
        path -> digest, from inputs.scan)."""
        held = {digests[str(path)] for path in held_out if str(path) in digests}
        kept = []
        for flag in self.flags:
            if digests.get(str(flag.path)) in held:
                self.dropped.drop("held_out_image", f"line {flag.line}: {flag.path.name} is a validation or test image")
            else:
                kept.append(flag)
        self.flags = kept

    def summary(self) -> dict:
        """task.json's `dataset.report.extra_data`."""
        return {"folder": str(self.folder), "lines": self.lines, "extra_examples": len(self.flags),
                **self.dropped.as_dict()}

    def describe(self) -> str:
        """The line a recipe prints."""
        dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(self.dropped.counts.items()))
        return (f"--extra-data {self.folder}: {len(self.flags)} flagged correction(s) of {self.lines} line(s) added to "
                f"the training split; skipped: {dropped or 'none'}")


def read_flagged(folder: Path, task: str, kind: str, labels: list[str]) -> Flagged:
    """The flags of `task` in `folder`, their corrections as indices into `labels` (the dataset's
    class names; for age & gender, the genders)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    folder = Path(folder)
    table = folder / METADATA
    if not folder.is_dir():
        raise SystemExit(f"--extra-data {folder}: no such folder")
    if not table.is_file():
        raise SystemExit(f"--extra-data {folder}: no metadata.jsonl; expected the app's flagged folder "
                         f"(images/<id>.<ext> and metadata.jsonl, one JSON object per line)")
    index = {label: i for i, label in enumerate(labels)}
    dropped = DropReport()
    latest: dict[Path, Flag] = {}
    lines = 0
    for number, text in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        lines += 1
        where = f"line {number}"
        try:
            row = json.loads(text)
        except ValueError as error:
            dropped.drop("malformed_json", f"{where}: not JSON ({error})")
            continue
        if not isinstance(row, dict):
            dropped.drop("malformed_row", f"{where}: a JSON {type(row).__name__}, not an object")
            continue
        if row.get("task") != task:
            dropped.drop("other_task", f"{where}: task {row.get('task')!r}")
            continue
        try:
            correction = parse_correction(row.get("correction"), kind, index)
        except Unusable as error:
            dropped.drop(error.reason, f"{where}: {error.detail}")
            continue
        path = image_path(folder, row.get("file_name"))
        if path is None:
            dropped.drop("malformed_row", f"{where}: file_name {row.get('file_name')!r} is not a path inside the folder")
            continue
        if not path.is_file():
            dropped.drop("missing_image", f"{where}: {row['file_name']}")
            continue
        try:
            open_image(path.read_bytes(), name=path.name)  # the header only, as inputs.scan checks
        except ImageError as error:
            dropped.drop("unreadable_image", f"{where}: {error}")
            continue
        if path in latest:
            dropped.drop("superseded", f"line {latest[path].line}: {row['file_name']} is corrected again on {where}")
        latest[path] = Flag(number, path, correction)
    flags = sorted(latest.values(), key=lambda flag: flag.line)
    return Flagged(folder, flags, lines, dropped, fingerprint([table, *(f.path for f in flags)], folder))


def image_path(folder: Path, file_name) -> Path | None:
    """FOLDER/file_name, or None when it is not a relative path that stays inside the folder."""
    if not isinstance(file_name, str) or not file_name.strip():
        return None
    relative = PurePosixPath(file_name.strip())
    if relative.is_absolute() or ".." in relative.parts:
        return None
    return folder.joinpath(*relative.parts)


def parse_correction(value, kind: str, index: dict):
    """The correction as indices; Unusable when it cannot be used."""
    if value is None:
        raise Unusable("no_correction", "correction is null")
    if kind == "single":
        if not isinstance(value, str):
            raise Unusable("malformed_correction", f"correction {value!r}: expected a class name")
        if value.strip() not in index:
            raise Unusable("unknown_label", f"{value!r} is not a class of this dataset")
        return index[value.strip()]
    if kind == "multi":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Unusable("malformed_correction", f"correction {value!r}: expected a list of label names")
        if not value:
            raise Unusable("empty_correction", "correction is an empty list")
        unknown = [v for v in value if v.strip() not in index]
        if unknown:
            raise Unusable("unknown_label", f"{', '.join(map(repr, unknown))} not among this dataset's labels")
        return tuple(sorted({index[v.strip()] for v in value}))
    if not isinstance(value, dict):
        raise Unusable("malformed_correction", f"correction {value!r}: expected {{\"gender\": ..., \"age\": ...}}")
    gender, age = value.get("gender"), value.get("age")
    if gender is None and age is None:
        raise Unusable("no_correction", "neither gender nor age given")
    if gender is not None and gender not in index:
        raise Unusable("unknown_label", f"gender {gender!r}: expected one of {', '.join(index)}")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, numbers.Real):
            raise Unusable("malformed_correction", f"age {age!r}: expected a number of years or null")
        if not MIN_AGE <= age <= MAX_AGE:
            raise Unusable("age_out_of_range", f"age {age} outside {MIN_AGE}..{MAX_AGE}")
        age = float(age)
    return (None if gender is None else index[gender], age)
