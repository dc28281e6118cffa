"""UTKFace as distributed: `UTKFace/[age]_[gender]_[race]_[date&time].jpg` (also `.jpg.chip.jpg`
for the aligned crops). The labels are in the file name, gender 0 male / 1 female — the opposite
code of IMDB-WIKI. Some real files have malformed names (a field missing); they are skipped."""

from __future__ import annotations

from pathlib import Path

from training.datasets.face_records import FEMALE, IMAGE_SUFFIXES, MALE, MAX_AGE, MIN_AGE, FaceRecord
from training.datasets.report import DropReport


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
