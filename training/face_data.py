"""Readers for the face datasets as distributed, with the usual cleaning rules.

IMDB-WIKI (`wiki_crop/wiki.mat` or `imdb_crop/imdb.mat`): one MATLAB struct whose fields are
1 x N arrays: `dob` (MATLAB serial date number of the birth date), `photo_taken` (year),
`full_path` (cell of paths relative to the .mat), `gender` (1 male, 0 female, NaN unknown),
`face_score` (-inf where no face was found), `second_face_score` (NaN when there is one face).
A row is kept when the age = photo_taken - birth year lies in 0..100, the face score is above the
threshold, there is no second face, and the gender is known.

UTKFace (`UTKFace/[age]_[gender]_[race]_[date&time].jpg`, also `.jpg.chip.jpg` for the aligned
crops): the labels are in the file name, gender 0 male / 1 female — the opposite code of
IMDB-WIKI. Some real files have malformed names (a field missing); they are skipped.

Both map onto the same labels, GENDERS = ("Female", "Male"). Every dropped row is counted under
its reason, and a few are listed, for the training report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import scipy.io

GENDERS = ("Female", "Male")
FEMALE, MALE = 0, 1
MIN_AGE, MAX_AGE = 0, 100
DEFAULT_MIN_FACE_SCORE = 1.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LISTED = 20  # examples kept per drop reason; all are counted


@dataclass
class FaceRecord:
    path: Path
    gender: int  # index into GENDERS
    age: float
    source: str  # "wiki", "imdb" or "utkface"


@dataclass
class DropReport:
    """Rows dropped by cleaning or parsing: a count per reason and a few examples each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def drop(self, reason: str, example: str):
        self.counts[reason] += 1
        listed = self.examples.setdefault(reason, [])
        if len(listed) < LISTED:
            listed.append(example)

    def as_dict(self) -> dict:
        return {"dropped": dict(sorted(self.counts.items())), "examples": self.examples}


# --- IMDB-WIKI -----------------------------------------------------------------------------

def birth_year(datenum: float) -> int:
    """Year of a MATLAB serial date number (day 1 = 1 January of year 0; Python's ordinal 1 is
    1 January of year 1, which MATLAB numbers 367)."""
    return date.fromordinal(int(datenum) - 366).year


def _field(struct, name):
    """One field of the loaded struct as a flat array (loadmat wraps everything in 1 x N arrays)."""
    try:
        values = struct[name]
    except (KeyError, ValueError):
        raise SystemExit(f"the .mat file has no field '{name}': expected IMDB-WIKI's structure") from None
    values = np.asarray(values)
    while values.dtype == object and values.size == 1 and isinstance(values.flat[0], np.ndarray) \
            and values.flat[0].dtype == object:
        values = values.flat[0]
    return values.reshape(-1)


def _text(cell) -> str:
    value = cell
    while isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        value = value.flat[0]
    return str(value)


def read_imdb_wiki(mat_file: Path, min_face_score: float = DEFAULT_MIN_FACE_SCORE, report: DropReport | None = None):
    """Clean rows of `wiki.mat` / `imdb.mat` as FaceRecords; drops go into `report`, by reason.

    Reasons, checked in this order: no_face (face_score -inf), low_face_score, second_face,
    unknown_gender, bad_date_of_birth, age_out_of_range."""
    report = report if report is not None else DropReport()
    name = mat_file.stem  # "wiki" or "imdb": also the struct's name
    try:
        content = scipy.io.loadmat(mat_file)
    except Exception as error:  # scipy raises several types for a damaged file
        raise SystemExit(f"{mat_file} could not be read as a MATLAB file: {error}") from None
    keys = [k for k in content if not k.startswith("__")]
    if name not in content and len(keys) != 1:
        raise SystemExit(f"{mat_file} holds {keys}, not the '{name}' struct of IMDB-WIKI")
    struct = content[name if name in content else keys[0]][0, 0]
    dob = _field(struct, "dob").astype(np.float64)
    taken = _field(struct, "photo_taken").astype(np.float64)
    paths = [_text(cell) for cell in _field(struct, "full_path")]
    gender = _field(struct, "gender").astype(np.float64)
    score = _field(struct, "face_score").astype(np.float64)
    second = _field(struct, "second_face_score").astype(np.float64)
    lengths = {len(dob), len(taken), len(paths), len(gender), len(score), len(second)}
    if len(lengths) != 1:
        raise SystemExit(f"{mat_file}: the fields have different lengths {sorted(lengths)}")
    records = []
    for i, relative in enumerate(paths):
        where = f"{name}.mat row {i + 1} ({relative})"
        if math.isinf(score[i]) and score[i] < 0:
            report.drop("no_face", where)
            continue
        if not score[i] > min_face_score:  # NaN fails too
            report.drop("low_face_score", where)
            continue
        if not math.isnan(second[i]):
            report.drop("second_face", where)
            continue
        if gender[i] not in (0.0, 1.0):
            report.drop("unknown_gender", where)
            continue
        try:
            age = taken[i] - birth_year(dob[i])
        except (ValueError, OverflowError):
            report.drop("bad_date_of_birth", where)
            continue
        if not MIN_AGE <= age <= MAX_AGE:
            report.drop("age_out_of_range", where)
            continue
        records.append(FaceRecord(mat_file.parent / relative, MALE if gender[i] == 1.0 else FEMALE, float(age), name))
    return records, report


# --- UTKFace -------------------------------------------------------------------------------

def parse_utkface_name(filename: str):
    """'26_1_2_20170116174525125.jpg.chip.jpg' -> (age 26, gender index of Female).

    Raises ValueError with the reason ("malformed_name", "unknown_gender", "age_out_of_range")."""
    stem = filename.split(".", 1)[0]
    fields = stem.split("_")
    if len(fields) != 4 or not all(f.isdigit() for f in fields):
        raise ValueError("malformed_name")
    age, code = int(fields[0]), int(fields[1])
    if code not in (0, 1):
        raise ValueError("unknown_gender")
    if not MIN_AGE <= age <= MAX_AGE:
        raise ValueError("age_out_of_range")
    return float(age), MALE if code == 0 else FEMALE


def read_utkface(folder: Path, report: DropReport | None = None):
    report = report if report is not None else DropReport()
    records = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            age, gender = parse_utkface_name(path.name)
        except ValueError as error:
            report.drop(str(error), f"UTKFace/{path.name}")
            continue
        records.append(FaceRecord(path, gender, age, "utkface"))
    return records, report


# --- the data folder -----------------------------------------------------------------------

def find_sources(data: Path) -> dict:
    """The datasets inside `data`: {'wiki': mat, 'imdb': mat, 'utkface': folder} (any subset)."""
    if not data.is_dir():
        raise SystemExit(f"{data} is not a folder")
    found = {}
    for name in ("wiki", "imdb"):
        for mat in (data / f"{name}_crop" / f"{name}.mat", data / f"{name}.mat"):
            if mat.is_file():
                found[name] = mat
                break
    for folder in (data / "UTKFace", data / "utkface", data / "crop_part1"):
        if folder.is_dir():
            found["utkface"] = folder
            break
    if not found:
        raise SystemExit(f"{data} holds neither wiki_crop/wiki.mat, imdb_crop/imdb.mat nor a UTKFace/ folder: "
                         f"expected IMDB-WIKI or UTKFace as distributed")
    return found


def read_faces(data: Path, min_face_score: float = DEFAULT_MIN_FACE_SCORE):
    """Every clean record of every dataset found in `data`, and the drop report per dataset."""
    records, reports = [], {}
    for name, location in find_sources(data).items():
        if name == "utkface":
            found, report = read_utkface(location)
        else:
            found, report = read_imdb_wiki(location, min_face_score)
        present = [r for r in found if r.path.is_file()]
        for record in found:
            if not record.path.is_file():
                report.drop("missing_image", str(record.path.relative_to(data)))
        records += present
        reports[name] = {"kept": len(present), **report.as_dict()}
    return records, reports
