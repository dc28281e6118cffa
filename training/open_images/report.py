"""What a build left out, and why: the manifest's account of skipped and refused rows."""

from __future__ import annotations

from collections import Counter, defaultdict


class Report:
    """What was left out, and why: goes into the manifest. Rows refused as unsafe (an ImageID
    that is no ImageID, a class name that is no folder name, a URL that is not http(s)) are
    listed with the rest and counted by kind in `refused`."""

    def __init__(self):
        self.images: dict[str, str] = {}
        self.boxes: list[dict] = []
        self.classes: list[dict] = []
        self.dropped: dict[str, Counter] = defaultdict(Counter)  # reason -> class folder -> boxes
        self.refused: Counter = Counter()  # kind -> rows

    def skip_image(self, image: str, reason: str):
        self.images.setdefault(image, reason)  # the first reason is the real one

    def skip_box(self, box, folder: str, reason: str):
        """`box`: a selection.Box (its image and its number k)."""
        self.boxes.append({"image": box.image, "box": box.k, "class": folder, "reason": reason})

    def skip_row(self, file: str, line: int, reason: str):
        self.boxes.append({"file": file, "line": line, "reason": reason})

    def refuse_row(self, file: str, line: int, kind: str, reason: str):
        self.skip_row(file, line, reason)
        self.refused[kind] += 1

    def refuse_image(self, image: str, kind: str, reason: str):
        if image not in self.images:  # once per image, however many boxes it has
            self.images[image] = reason
            self.refused[kind] += 1

    def refuse_class(self, name: str, label: str, kind: str):
        self.classes.append({"name": name, "label": label, "reason": kind})
        self.refused[kind] += 1
