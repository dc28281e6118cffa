"""What the face datasets (IMDB-WIKI, UTKFace) share: the record, the gender labels, the drop
report, and finding them in one data folder.

Both map onto the same labels, GENDERS = ("Female", "Male"). Every dropped row is counted under
its reason, and a few are listed, for the training report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GENDERS = ("Female", "Male")
FEMALE, MALE = 0, 1
MIN_AGE, MAX_AGE = 0, 100
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class FaceRecord:
    path: Path
    gender: int | None  # index into GENDERS; None only for a flag that corrects the age alone
    age: float | None  # None only for a flag that corrects the gender alone
    source: str  # "wiki", "imdb", "utkface" or "flagged"
    # Where the face is, for a picture that is not a dataset crop (a flagged photo): its centre and
    # the side of the square the network sees, in the decoded picture's pixels, and its tilt in
    # degrees counter-clockwise. None: the dataset crop's own centre and central square, upright.
    centre: tuple[float, float] | None = None
    side: float | None = None
    tilt: float = 0.0


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


def read_faces(data: Path, min_face_score: float | None = None):
    """Every clean record of every dataset found in `data`, and the drop report per dataset."""
    from training.datasets.imdb_wiki import DEFAULT_MIN_FACE_SCORE, read_imdb_wiki
    from training.datasets.utkface import read_utkface

    min_face_score = DEFAULT_MIN_FACE_SCORE if min_face_score is None else min_face_score
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
