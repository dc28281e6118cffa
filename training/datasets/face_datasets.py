"""The face datasets in one data folder: which of IMDB-WIKI and UTKFace it holds, and all their
clean records, with the drop report per dataset."""

from __future__ import annotations

from pathlib import Path

from training.datasets.imdb_wiki import DEFAULT_MIN_FACE_SCORE, read_imdb_wiki
from training.datasets.utkface import read_utkface


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
