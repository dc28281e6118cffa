"""Flagged corrections, as the app's Flag button writes them, read for a recipe's `--flags`.

The flags of one task are a Hugging Face `imagefolder`:

    FOLDER/images/<id>.<ext>
    FOLDER/metadata.jsonl    one JSON object per line:
        {"file_name": "images/<id>.<ext>", "task": "dog_breed", "answer": ..., "correction": ...,
         "comment": "...", "origin": "...", "time": "..."}

`--flags` names that folder, the flag directory above it (FOLDER/<task>/ is read), or a Hub
dataset at a commit, `hf://datasets/OWNER/NAME@COMMIT` (training.datasets.hub; only the task's
files are downloaded): one pushed by `python -m core.flags push` (the layout above), or by a running
app (core/flags_hub.py: `<task>/<store>/` holds one such folder per flags file the app kept; all
are read, in the order of their names).

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

from core.flags import IMAGES, METADATA  # the app writes the folder: one name for each part
from core.images import ImageError, open_image
from training.datasets.face_records import MAX_AGE, MIN_AGE
from training.datasets.hub import PREFIX, resolve_data
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
    """The usable flags of one folder, what was skipped, and the folder's content hash. From the
    Hub, `folder` is the download and `source` the repo and commit."""

    folder: Path
    flags: list[Flag]
    lines: int
    dropped: DropReport = field(default_factory=DropReport)
    sha256: str = ""  # over the tables and the pictures used: a resumed run must see the same flags
    tables: list[Path] = field(default_factory=list)  # the metadata.jsonl files read
    source: dict = field(default_factory=dict)  # {"reference", "repo", "commit"} for a Hub dataset

    @property
    def files(self) -> list[Path]:
        """What a recipe adds to its content-hash scan besides the pictures."""
        return list(self.tables)

    @property
    def named(self) -> str:
        """The folder as --flags named it (a Hub reference, not the download's path)."""
        return self.source.get("reference") or str(self.folder)

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
        hub = {key: self.source[key] for key in ("repo", "commit") if key in self.source}
        return {"folder": self.named, **hub, "lines": self.lines, "extra_examples": len(self.flags),
                **self.dropped.as_dict()}

    def describe(self) -> str:
        """The line a recipe prints."""
        dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(self.dropped.counts.items()))
        return (f"--flags {self.named}: {len(self.flags)} flagged correction(s) of {self.lines} line(s) added to "
                f"the training split; skipped: {dropped or 'none'}")


def read_flagged(folder, task: str, kind: str, labels: list[str]) -> Flagged:
    """The flags of `task` in `folder` (a folder, or a Hub reference: see the module), their
    corrections as indices into `labels` (the dataset's class names; for age & gender, the genders)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    source = {}
    if str(folder).startswith(PREFIX):
        source = {"reference": str(folder)}
        folder, pinned = download(str(folder), task)
        source.update(pinned)
    folder = Path(folder)
    named = source.get("reference") or folder
    if not folder.is_dir() and not source:
        raise SystemExit(f"--flags {named}: no such folder")
    tables = flag_tables(folder, task)
    if not tables:
        raise SystemExit(f"--flags {named}: no metadata.jsonl; expected the app's flagged folder "
                         f"(images/<id>.<ext> and metadata.jsonl, one JSON object per line), the flag directory "
                         f"holding it as {task}/, or a Hub dataset of them")
    index = {label: i for i, label in enumerate(labels)}
    dropped = DropReport()
    latest: dict[Path, Flag] = {}
    lines = 0
    for table in tables:
        # One table: "line 9"; several (a Hub dataset the app pushed): "dog_breed/<store>/metadata.jsonl line 9".
        named_table = "" if table == folder / METADATA else f"{table.relative_to(folder).as_posix()} "
        for number, text in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            lines += 1
            where = f"{named_table}line {number}"
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
            path = image_path(table.parent, row.get("file_name"))
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
                dropped.drop("superseded", f"{named_table}line {latest.pop(path).line}: {row['file_name']} is "
                                           f"corrected again on line {number}")
            latest[path] = Flag(number, path, correction)  # in the order of each picture's latest line
    flags = list(latest.values())
    return Flagged(folder, flags, lines, dropped, fingerprint([*tables, *(f.path for f in flags)], folder), tables,
                   source)


def flag_tables(folder: Path, task: str) -> list[Path]:
    """The metadata.jsonl files of `task`'s flags under `folder`: its own, else those of the task's
    folder and of the folders in it (the layout the app pushes to the Hub), in the order of their names."""
    if (folder / METADATA).is_file():
        return [folder / METADATA]
    return sorted(table for table in [folder / task / METADATA, *(folder / task).glob(f"*/{METADATA}")]
                  if table.is_file())


def download(reference: str, task: str) -> tuple[Path, dict]:
    """A Hub dataset of flags at its commit, only what `task` reads of it: the download's folder
    and {"repo", "commit"}. An unreachable Hub stops the run with what to check."""
    try:
        return resolve_data(reference, allow_patterns=[METADATA, f"{IMAGES}/*", f"{task}/*"])
    except Exception as error:  # resolve_data names a missing repo or commit itself (SystemExit)
        first = (str(error).strip().splitlines() or [""])[0][:300]
        raise SystemExit(f"--flags {reference}: could not download it from the Hub ({type(error).__name__}: "
                         f"{first}). Check the network, HF_ENDPOINT and HF_TOKEN (a private repo needs a token "
                         f"that can read it)") from None


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
