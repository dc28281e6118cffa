"""Faces: finding them, and the one rotate-and-crop used in training and in the app.

Detection uses scikit-image's LBP frontal-face cascade, whose model file ships
inside the scikit-image wheel (no download, works offline). The cascade only
finds upright faces, so the image is also searched rotated by a few angles
(-45..+45 degrees by default); each hit is mapped back to the original frame and
the hits are merged by non-maximum suppression. A face found at several angles
and scales collects more votes, which is what ranks faces and filters out the
cascade's false positives.

Angles are in degrees, counter-clockwise as seen on screen (PIL's convention). A
face "tilted by +20" was turned 20 degrees counter-clockwise from upright;
`rotated_crop(image, centre, side, -20)` turns it back. Straightening always
rotates the whole picture around the face centre and crops afterwards (as
d4nst/RotNet does), so the corners of the crop are real pixels, never padding,
wherever the face has enough picture around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

# The image is searched at this longest side: detection cost grows with the pixel count.
DETECTION_SIDE = 224
SEARCH_ANGLES = (-45, -30, -15, 0, 15, 30, 45)
# The cascade's own grouping: windows that must overlap for one hit at one search angle. Lower values
# let through many false positives on busy pictures (measured on skimage's astronaut photo).
MIN_NEIGHBOURS = 3
MAX_FACES = 4


@dataclass
class Face:
    """A detected face in the original image's pixel frame."""

    centre: tuple[float, float]  # (x, y)
    side: float  # side of the square box, in pixels
    votes: int  # search angles at which the cascade found it (more = surer)
    search_angle: float  # the search angle of its strongest hit: a rough hint of its tilt

    @property
    def box(self) -> tuple[int, int, int, int]:
        x, y = self.centre
        half = self.side / 2
        return (int(round(x - half)), int(round(y - half)), int(round(x + half)), int(round(y + half)))


@lru_cache(maxsize=1)
def _cascade():
    from skimage import data, feature

    return feature.Cascade(data.lbp_frontal_face_cascade_filename())


def rotate_point(point, angle: float, centre, new_centre=None):
    """Where `point` lands when the picture turns `angle` degrees counter-clockwise around `centre`.

    With `new_centre`, the centre itself moves there (a rotation with `expand=True`)."""
    x, y = point[0] - centre[0], point[1] - centre[1]
    theta = math.radians(angle)
    # Counter-clockwise on screen, where y grows downwards.
    rx = x * math.cos(theta) + y * math.sin(theta)
    ry = -x * math.sin(theta) + y * math.cos(theta)
    cx, cy = new_centre if new_centre is not None else centre
    return (rx + cx, ry + cy)


def detect_faces(image: Image.Image, max_faces: int = MAX_FACES, angles=SEARCH_ANGLES,
                 detection_side: int = DETECTION_SIDE) -> list[Face]:
    """The faces in an RGB image, most votes first (at most `max_faces`)."""
    scale = min(1.0, detection_side / max(image.size))
    small = image.convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=None)
    centre = (small.width / 2, small.height / 2)
    hits = []  # (x, y, side, angle) in the small frame
    for angle in angles:
        turned = small.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True) if angle else small
        pixels = np.asarray(turned, dtype=np.float64) / 255.0
        side = min(pixels.shape)
        if side < 24:
            continue
        found = _cascade().detect_multi_scale(pixels, scale_factor=1.2, step_ratio=1, min_size=(24, 24),
                                              max_size=(side, side), min_neighbor_number=MIN_NEIGHBOURS)
        turned_centre = (turned.width / 2, turned.height / 2)
        for hit in found:
            hx, hy = hit["c"] + hit["width"] / 2, hit["r"] + hit["height"] / 2
            # Back to the unrotated frame: turn by -angle around the rotated picture's centre.
            x, y = rotate_point((hx, hy), -angle, turned_centre, centre)
            hits.append((x, y, float(hit["width"]), float(angle)))
    faces = _merge(hits)[:max_faces]
    return [Face((x / scale, y / scale), side / scale, votes, angle) for x, y, side, votes, angle in faces]


def _merge(hits):
    """Greedy clustering: hits whose centres lie within half a box of each other are one face.

    A face is ranked by the number of search angles that found it, then by its hits: a real
    face is found over a range of tilts, a false positive mostly at one."""
    remaining = sorted(hits, key=lambda h: -h[2])
    clusters = []
    while remaining:
        x, y, side, _ = remaining[0]
        members = [h for h in remaining if math.hypot(h[0] - x, h[1] - y) < 0.5 * max(side, h[2])
                   and 0.5 < h[2] / side < 2.0]
        # Re-centre on the members and gather again, so the cluster does not depend on the seed hit.
        mx, my = np.mean([h[0] for h in members]), np.mean([h[1] for h in members])
        mside = float(np.median([h[2] for h in members]))
        members = [h for h in remaining if math.hypot(h[0] - mx, h[1] - my) < 0.5 * max(mside, h[2])
                   and 0.5 < h[2] / mside < 2.0] or members
        remaining = [h for h in remaining if h not in members]
        angles = [h[3] for h in members]
        hint = max(set(angles), key=angles.count)
        clusters.append((float(np.mean([h[0] for h in members])), float(np.mean([h[1] for h in members])),
                         float(np.median([h[2] for h in members])), len(set(angles)), hint, len(members)))
    clusters.sort(key=lambda c: (-c[3], -c[5], -c[2]))
    # Non-maximum suppression: drop a weaker face whose centre lies inside a stronger one's box.
    kept = []
    for c in clusters:
        if all(abs(c[0] - k[0]) > k[2] / 2 or abs(c[1] - k[1]) > k[2] / 2 for k in kept):
            kept.append(c[:5])
    return kept


def rotated_crop(image: Image.Image, centre, side: float, angle: float, out_size: int | None = None,
                 fill=(0, 0, 0)) -> Image.Image:
    """Turn the picture `angle` degrees counter-clockwise around `centre`, then crop the square of
    `side` pixels centred there (resized to `out_size` if given).

    Only the square of side*sqrt(2) around the centre can reach the crop, so that part is cut out
    first and rotated: the same pixels as rotating the whole picture, at a fraction of the cost.
    Parts of the crop outside the picture get `fill`."""
    cx, cy = centre
    reach = int(math.ceil(side * math.sqrt(2) / 2)) + 2
    left, top = int(math.floor(cx)) - reach, int(math.floor(cy)) - reach
    region = _crop_filled(image, (left, top, left + 2 * reach, top + 2 * reach), fill)
    local = (cx - left, cy - top)
    turned = region.rotate(angle, resample=Image.Resampling.BICUBIC, center=local, fillcolor=fill) if angle else region
    half = side / 2
    box = (local[0] - half, local[1] - half, local[0] + half, local[1] + half)
    if out_size is None:
        out_size = max(1, int(round(side)))
    # resize with a box cuts and scales in one resampling step (sub-pixel accurate).
    return turned.resize((out_size, out_size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)


def _crop_filled(image: Image.Image, box, fill) -> Image.Image:
    """Crop a box that may reach outside the picture; the outside is `fill`."""
    left, top, right, bottom = box
    canvas = Image.new("RGB", (right - left, bottom - top), fill)
    source = image.crop((max(0, left), max(0, top), min(image.width, right), min(image.height, bottom)))
    canvas.paste(source, (max(0, left) - left, max(0, top) - top))
    return canvas


def inner_side(width: int, height: int) -> float:
    """Side of the largest centred square that stays inside a width x height picture at any rotation."""
    return min(width, height) / math.sqrt(2)


def wrap_angle(angle):
    """Angles into (-180, 180]: +179 and -179 are 2 degrees apart, not 358."""
    wrapped = np.mod(np.asarray(angle, dtype=np.float64) + 180.0, 360.0) - 180.0
    wrapped = np.where(wrapped == -180.0, 180.0, wrapped)
    return wrapped if wrapped.ndim else float(wrapped)


def angle_error(predicted, true):
    """Absolute angular difference in degrees, through the shorter way round (0..180)."""
    return np.abs(wrap_angle(np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)))


def decode_rotation(outputs, rotation: dict) -> np.ndarray:
    """The rotation network's outputs -> tilts in degrees, as its bundle's `rotation` entry says.

    "sincos": atan2 of the two outputs; "bins": the circular mean of the bin centres weighted by
    their probabilities. Both wrap around: +179 and -179 are neighbours."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if rotation["loss"] == "sincos":
        return np.degrees(np.arctan2(outputs[:, 0], outputs[:, 1]))
    centres = np.radians(np.asarray(rotation["bin_centres"], dtype=np.float64))
    return np.degrees(np.arctan2(outputs @ np.sin(centres), outputs @ np.cos(centres)))
