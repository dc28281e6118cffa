"""IMDB-WIKI as distributed (`wiki_crop/wiki.mat` or `imdb_crop/imdb.mat` beside the image folders).

One MATLAB struct whose fields are 1 x N arrays: `dob` (MATLAB serial date number of the birth
date), `photo_taken` (year), `full_path` (cell of paths relative to the .mat), `gender` (1 male,
0 female, NaN unknown), `face_score` (-inf where no face was found), `second_face_score` (NaN
when there is one face). A row is kept when the age = photo_taken - birth year lies in 0..100,
the face score is above the threshold, there is no second face, and the gender is known.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import scipy.io

from training.datasets.face_records import FEMALE, MALE, MAX_AGE, MIN_AGE, FaceRecord
from training.datasets.report import DropReport

DEFAULT_MIN_FACE_SCORE = 1.0


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
