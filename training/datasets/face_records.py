"""What the face datasets (IMDB-WIKI, UTKFace) share: the record and the gender labels (their
readers are training/datasets/imdb_wiki.py and utkface.py; face_datasets.py finds them in a folder).

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
