"""Age and gender with rotation correction, on IMDB-WIKI and/or UTKFace.

    python -m training.age_gender --data DIR --out models/age_gender

DIR holds the datasets as distributed, any of: `wiki_crop/wiki.mat` (+ its image folders),
`imdb_crop/imdb.mat`, `UTKFace/*.jpg`. Rows are cleaned as usual (training/datasets/) and the
drops are counted by reason in the bundle's report.

The recipe follows the course, in its order:
1. A rotation network, self-supervised: upright face crops turned by a random angle
   (+-45 degrees by default, `--max-angle` up to 180), the network learns the angle, as angle
   bins with a classification loss (RotNet) or as (sin, cos) regression: both wrap around.
2. A gender classifier and 3. an age regressor, as one network with two heads on one backbone
   (Xception by default): the age head has one output per gender, mixed by the predicted gender
   probabilities — the course's "age layers split by the predicted gender".
Transfer learning follows the course's schedule: the lower layers of the backbone frozen and the
top trained, then half of the network unfrozen at a tenth of the learning rate.

Every network sees crops made by core.faces.rotated_crop, the same function the app uses to
straighten a detected face.
"""

from __future__ import annotations

import io
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from core import faces
from core.images import ImageError, load_image
from training import backbones, evaluation, fitting, inputs, options, publishing
from training.datasets.faces import GENDERS, MAX_AGE, MIN_AGE, read_faces
from training.datasets.imdb_wiki import DEFAULT_MIN_FACE_SCORE
from training.datasets.report import MAX_LISTED
from training.datasets.splits import stratified_split

TASK = "age_gender"
# The network's crop around a detected face is this many times the detector's box. It is measured
# on the training faces (calibrate_crop_scale); this is the fallback when too few are detected: about
# what IMDB-WIKI's crops hold (the face box padded by 40 % a side; we train on its central 1/sqrt(2)).
FACE_CROP_SCALE = 1.25
CALIBRATION_FACES = 200
# The seed freezes Xception's first 115 of 132 layers in the first phase: the top 13 % train.
FIRST_PHASE_FRACTION = 0.13


# --- data ------------------------------------------------------------------------------------

def load_contexts(records, size: int, workers: int = 4):
    """Each face crop, decoded once, as the square around its centre that any rotation of the
    network's crop can reach: uint8 (N, C, C, 3) with C = ceil(size * sqrt(2)).

    A dataset crop's face region is its central square of side min(width, height) / sqrt(2), which
    stays inside the picture at any angle. Returns (contexts, kept records, unreadable list)."""
    context_side = context_size(size)

    def decode(record):
        try:
            image = load_image(record.path)
        except ImageError as error:
            return None, str(error)
        centre = (image.width / 2, image.height / 2)
        side = faces.inner_side(image.width, image.height) * math.sqrt(2)
        return np.asarray(faces.rotated_crop(image, centre, side, 0, context_side)), None

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, records))
    kept = [(pixels, record) for (pixels, _), record in zip(results, records) if pixels is not None]
    unreadable = [f"{record.path.name}: {reason}" for (pixels, reason), record in zip(results, records) if pixels is None]
    contexts = np.stack([p for p, _ in kept]) if kept else np.zeros((0, context_side, context_side, 3), np.uint8)
    return contexts, [r for _, r in kept], unreadable


def context_size(size: int) -> int:
    return int(math.ceil(size * math.sqrt(2)))


def network_crops(contexts: np.ndarray, angles, size: int) -> np.ndarray:
    """The network's input from contexts: each turned by its angle around its centre, then the
    central size x size square (core.faces.rotated_crop, as in the app)."""
    out = np.empty((len(contexts), size, size, 3), np.uint8)
    for i, (context, angle) in enumerate(zip(contexts, angles)):
        image = Image.fromarray(context)
        centre = (image.width / 2, image.height / 2)
        out[i] = np.asarray(faces.rotated_crop(image, centre, image.width / math.sqrt(2), float(angle), size))
    return out


def calibrate_crop_scale(records, rng: np.random.Generator) -> tuple[float, int]:
    """(crop scale, faces measured): the median ratio between the crop the networks train on and the
    detector's box on the same upright dataset faces, so the app crops a detected face as training
    did. Only detections near the picture's centre count (the dataset's face is centred)."""
    ratios = []
    for i in rng.permutation(len(records))[:CALIBRATION_FACES]:
        try:
            image = load_image(records[i].path)
        except ImageError:
            continue
        found = faces.detect_faces(image, max_faces=1, search_angles=(0,))
        if found and math.dist(found[0].centre, (image.width / 2, image.height / 2)) < 0.15 * min(image.size):
            ratios.append(faces.inner_side(image.width, image.height) / found[0].side)
    if len(ratios) < 10:
        return FACE_CROP_SCALE, len(ratios)
    return round(float(np.median(ratios)), 3), len(ratios)


def random_angles(rng: np.random.Generator, count: int, max_angle: float) -> np.ndarray:
    return rng.uniform(-max_angle, max_angle, size=count)


def rotated_faces(contexts, size: int, max_angle: float, encode, batch_size: int, seed: int):
    """Fresh random turns of the training faces every epoch, as a keras PyDataset of (crops, targets)."""
    import keras

    class RotatedFaces(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(contexts) / batch_size)

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(contexts))
            self.angles = random_angles(self.rng, len(contexts), max_angle)

        def __getitem__(self, index):
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            return network_crops(contexts[chosen], self.angles[chosen], size).astype(np.float32), encode(self.angles[chosen])

    return RotatedFaces()


# --- the rotation network ---------------------------------------------------------------------

def rotation_bins(max_angle: float, bin_width: float) -> np.ndarray:
    """Centres of the angle bins covering -max..+max (the whole circle at 180)."""
    count = max(2, int(round(2 * max_angle / bin_width)))
    width = 2 * max_angle / count
    return -max_angle + width * (np.arange(count) + 0.5)


def rotation_targets(angles, loss: str, bins: np.ndarray | None):
    angles = np.asarray(angles, dtype=np.float64)
    if loss == "sincos":
        radians = np.radians(angles)
        return np.stack([np.sin(radians), np.cos(radians)], axis=1).astype(np.float32)
    width = bins[1] - bins[0]
    return np.clip(np.floor((angles - (bins[0] - width / 2)) / width), 0, len(bins) - 1).astype(np.int64)


def build_rotation_network(size: int, backbone: str, weights: str, loss: str, bins):
    import keras
    from keras import layers

    # No flips or rotations here: both would change the very angle the network learns.
    augmentation = [layers.RandomContrast(0.2), layers.RandomBrightness(0.1, value_range=(0, 255))]
    inputs, x, base = backbones.backbone_features(size, backbone, weights, augmentation)
    x = layers.Dropout(0.2)(x)
    if loss == "sincos":
        outputs = layers.Dense(2, name="angle")(x)
    else:
        outputs = layers.Dense(len(bins), activation="softmax", name="angle")(x)
    return keras.Model(inputs, outputs, name="rotation"), base


def compile_rotation(loss: str):
    def compile_model(model, learning_rate):
        import keras

        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="mse" if loss == "sincos" else "sparse_categorical_crossentropy")

    return compile_model


# --- the gender and age network ------------------------------------------------------------

def build_gender_age_network(size: int, backbone: str, weights: str, age_mean: float, age_std: float):
    """One backbone, two heads: gender (softmax over GENDERS) and age in years.

    The age head predicts one age per gender and mixes them with the predicted gender
    probabilities (the course splits the age layers by the predicted gender)."""
    import keras
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomTranslation(0.05, 0.05),
                    layers.RandomZoom(0.1), layers.RandomContrast(0.2)]
    inputs, x, base = backbones.backbone_features(size, backbone, weights, augmentation)
    x = layers.Dropout(0.3)(x)
    gender = layers.Dense(len(GENDERS), activation="softmax", name="gender")(x)
    per_gender = layers.Dense(len(GENDERS), name="age_per_gender")(layers.Dense(64, activation="relu")(x))
    per_gender = layers.Rescaling(scale=age_std, offset=age_mean, name="years")(per_gender)
    age = layers.Dot(axes=1, name="age")([per_gender, gender])
    return keras.Model(inputs, {"gender": gender, "age": age}, name="gender_age"), base


def compile_gender_age(age_std: float):
    def compile_model(model, learning_rate):
        import keras

        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss={"gender": "sparse_categorical_crossentropy", "age": "mse"},
                      loss_weights={"gender": 1.0, "age": 1.0 / max(age_std, 1.0) ** 2},
                      metrics={"gender": ["accuracy"], "age": ["mae"]})

    return compile_model


# --- evaluation ------------------------------------------------------------------------------

def best_constant_angle_error(angles) -> float:
    """Mean angular error of the best single guess (searched every degree): the baseline."""
    candidates = np.arange(-180, 180, 1.0)
    return float(min(np.mean(faces.angle_error(c, angles)) for c in candidates))


def evaluate(rotation_model, gender_age_model, rotation: dict, x_rot, angles, x_test, y_gender, y_age,
             train_gender, train_age, batch_size):
    predicted_angles = faces.decode_rotation(rotation_model.predict(x_rot, batch_size=batch_size, verbose=0), rotation)
    errors = faces.angle_error(predicted_angles, angles)
    outputs = gender_age_model.predict(x_test, batch_size=batch_size, verbose=0)
    gender_pred = outputs["gender"].argmax(axis=1)
    age_pred = outputs["age"].reshape(-1)
    majority = np.bincount(train_gender, minlength=len(GENDERS)).argmax()
    mean_age = float(np.mean(train_age))
    per_class = evaluation.classification_metrics(y_gender, outputs["gender"], list(GENDERS), k=1)["per_class"]
    return {
        "rotation_mae_degrees": float(np.mean(errors)),
        "rotation_within_10_degrees": float(np.mean(errors <= 10)),
        "gender_accuracy": float(np.mean(gender_pred == y_gender)),
        "age_mae": float(np.mean(np.abs(age_pred - y_age))),
        "age_rmse": float(np.sqrt(np.mean((age_pred - y_age) ** 2))),
        "baselines": {
            "rotation_mae_best_constant": best_constant_angle_error(angles),
            "gender_accuracy_majority": float(np.mean(y_gender == majority)),
            "age_mae_train_mean": float(np.mean(np.abs(mean_age - y_age))),
            "age_rmse_train_mean": float(np.sqrt(np.mean((mean_age - y_age) ** 2))),
        },
        "gender_per_class": per_class,
        "test_faces": int(len(y_age)),
    }


# --- recipe ----------------------------------------------------------------------------------

def parse_args(argv):
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=299, default_backbone="xception")
    parser.set_defaults(fine_tune_fraction=0.5)
    parser.add_argument("--max-angle", type=float, default=45.0,
                        help="the rotation network learns tilts in -A..+A degrees (up to 180)")
    parser.add_argument("--rotation-loss", choices=("bins", "sincos"), default="bins",
                        help="angle bins with cross-entropy (RotNet) or (sin, cos) regression")
    parser.add_argument("--angle-bin", type=float, default=2.0, help="bin width in degrees for --rotation-loss bins")
    parser.add_argument("--rotation-backbone", choices=sorted(backbones.BACKBONES),
                        help="backbone of the rotation network (default: --backbone)")
    parser.add_argument("--rotation-epochs", type=int, help="epochs of the rotation network (default: --epochs)")
    parser.add_argument("--min-face-score", type=float, default=DEFAULT_MIN_FACE_SCORE,
                        help="IMDB-WIKI rows need a face_score above this")
    parser.add_argument("--max-faces", type=int, default=faces.MAX_FACES, help="faces handled per picture in the app")
    args = parser.parse_args(argv)
    if not 0 < args.max_angle <= 180:
        parser.error("--max-angle must be in (0, 180]")
    args.rotation_backbone = args.rotation_backbone or args.backbone
    args.rotation_epochs = args.rotation_epochs if args.rotation_epochs is not None else args.epochs
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    size = args.image_size

    # 1. Data: the datasets as distributed, cleaned; each face decoded once.
    records, reports = read_faces(args.data, args.min_face_score)
    for name, report in reports.items():
        dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in report["dropped"].items())
        print(f"{name}: {report['kept']} faces kept; dropped: {dropped or 'none'}")
    contexts, records, unreadable = load_contexts(records, size)
    if unreadable:
        print(f"  {len(unreadable)} unreadable images, e.g. {unreadable[0]}")
    genders = np.array([r.gender for r in records], dtype=np.int64)
    ages = np.array([r.age for r in records], dtype=np.float32)
    if len(records) < 10 or len(np.unique(genders)) < 2:
        raise SystemExit(f"Only {len(records)} usable faces ({len(np.unique(genders))} gender(s)); "
                         f"at least 10 with both genders are needed (see the counts above)")
    train_idx, val_idx, test_idx = stratified_split(genders, (0.8, 0.1, 0.1), args.seed)
    print(f"{len(records)} faces; {len(train_idx)} train, {len(val_idx)} validation, {len(test_idx)} test")

    # 2. The rotation network, self-supervised: random turns of the upright training faces.
    rotation = {"loss": args.rotation_loss, "max_angle": args.max_angle, "backbone": args.rotation_backbone}
    bins = rotation_bins(args.max_angle, args.angle_bin) if args.rotation_loss == "bins" else None
    if bins is not None:
        rotation["bin_centres"] = bins.round(6).tolist()
    encode = lambda angles: rotation_targets(angles, args.rotation_loss, bins)  # noqa: E731
    val_angles = random_angles(rng, len(val_idx), args.max_angle)
    test_angles = random_angles(rng, len(test_idx), args.max_angle)
    rotated_val = network_crops(contexts[val_idx], val_angles, size).astype(np.float32)
    train_rotations = rotated_faces(contexts[train_idx], size, args.max_angle, encode, args.batch_size, args.seed)
    rotation_model, rotation_base = build_rotation_network(size, args.rotation_backbone, args.weights,
                                                           args.rotation_loss, bins)
    fitting.fit_two_phases(rotation_model, rotation_base, args, train_rotations, (rotated_val, encode(val_angles)),
                          compile_rotation(args.rotation_loss), args.rotation_epochs,
                          first_phase_fraction=FIRST_PHASE_FRACTION)

    # 3. Gender and age on the upright crops, with the course's two-phase schedule.
    upright = network_crops(contexts, np.zeros(len(contexts)), size)
    age_mean, age_std = float(ages[train_idx].mean()), float(max(ages[train_idx].std(), 1.0))
    gender_age_model, base = build_gender_age_network(size, args.backbone, args.weights, age_mean, age_std)
    targets = lambda idx: {"gender": genders[idx], "age": ages[idx]}  # noqa: E731
    fitting.fit_two_phases(gender_age_model, base, args, (upright[train_idx].astype(np.float32), targets(train_idx)),
                          (upright[val_idx].astype(np.float32), targets(val_idx)), compile_gender_age(age_std),
                          first_phase_fraction=FIRST_PHASE_FRACTION)

    # 4. Evaluate on held-out faces: turned test faces for the angle, upright ones for gender/age.
    rotated_test = network_crops(contexts[test_idx], test_angles, size).astype(np.float32)
    metrics = evaluate(rotation_model, gender_age_model, rotation, rotated_test, test_angles,
                       upright[test_idx].astype(np.float32), genders[test_idx], ages[test_idx],
                       genders[train_idx], ages[train_idx], args.batch_size)
    base_line = metrics["baselines"]
    print(f"test: rotation error {metrics['rotation_mae_degrees']:.1f} deg (best constant guess "
          f"{base_line['rotation_mae_best_constant']:.1f}), gender accuracy {metrics['gender_accuracy']:.3f} "
          f"(majority {base_line['gender_accuracy_majority']:.3f}), age MAE {metrics['age_mae']:.1f} y "
          f"RMSE {metrics['age_rmse']:.1f} y (train mean: MAE {base_line['age_mae_train_mean']:.1f}, "
          f"RMSE {base_line['age_rmse_train_mean']:.1f})")

    # 5. The bundle: both networks, what inference needs, the report, a few held-out examples.
    crop_scale, calibrated_on = calibrate_crop_scale([records[i] for i in train_idx], rng)
    print(f"face crop: {crop_scale} x the detector's box " + (
        f"(median over {calibrated_on} detected training faces)" if calibrated_on >= 10 else
        f"(default: only {calibrated_on} training faces detected)"))
    used = [r.path for r in records]
    dataset = {
        "name": " + ".join({"wiki": "IMDB-WIKI (wiki)", "imdb": "IMDB-WIKI (imdb)", "utkface": "UTKFace"}[n]
                           for n in reports),
        "images": len(used), "split": f"stratified by gender 80/10/10, seed {args.seed}",
        "sha256": inputs.fingerprint(used, args.data),
        "report": {**reports, "unreadable_images_count": len(unreadable),
                   "unreadable_images": unreadable[:MAX_LISTED]},
    }
    metadata = publishing.base_metadata(
        TASK, list(GENDERS), size, metrics, dataset, demo=args.demo, backbone=args.backbone,
        rotation=rotation,
        age={"rmse": metrics["age_rmse"], "mae": metrics["age_mae"], "range": [MIN_AGE, MAX_AGE]},
        face={"detector": faces.DETECTOR, "min_confidence": faces.MIN_CONFIDENCE, "min_size": faces.MIN_FACE_SIZE,
              "search_angles": list(faces.SEARCH_ANGLES), "crop_scale": crop_scale,
              "crop_scale_calibrated_on": calibrated_on, "max_faces": args.max_faces,
              # The eyes' held-out tilt error is not measured yet: the app straightens by the network.
              "tilt": {"network_mae": metrics["rotation_mae_degrees"], "eyes_mae": None, "eyes_found": None,
                       "default": "network"}},
    )
    save(args.out, rotation_model, gender_age_model, metadata, [records[i] for i in test_idx], examples=None)
    if args.push_to_hub:
        publishing.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def save(out: Path, rotation_model, gender_age_model, metadata: dict, test_records, examples=None) -> Path:
    metrics = metadata["metrics"]
    b = metrics["baselines"]
    rows = [("rotation MAE (degrees)", metrics["rotation_mae_degrees"]),
            ("rotation MAE, best constant guess", b["rotation_mae_best_constant"]),
            ("gender accuracy", metrics["gender_accuracy"]),
            ("gender accuracy, majority class", b["gender_accuracy_majority"]),
            ("age MAE (years)", metrics["age_mae"]), ("age RMSE (years)", metrics["age_rmse"]),
            ("age MAE, training mean", b["age_mae_train_mean"]), ("age RMSE, training mean", b["age_rmse_train_mean"])]
    report = metadata["dataset"]["report"]
    drops = "\n".join(f"| {name} | {r['kept']} | " + (", ".join(f"{reason.replace('_', ' ')} {count}"
                                                                for reason, count in r["dropped"].items()) or "none")
                      + " |" for name, r in report.items() if isinstance(r, dict))
    rotation = metadata["rotation"]
    body = f"""
## Pipeline

1. Faces are found by MTCNN (the `mtcnn` wheel's P-, R- and O-Net), with five landmarks; the eyes
   give a second tilt estimate beside the network's.
2. The rotation network (`rotation.keras`, {rotation['backbone']}, {rotation['loss']} loss) estimates the
   face's tilt within +-{rotation['max_angle']:g} degrees from a crop of {metadata['face']['crop_scale']} times the face box.
3. The picture is turned back around the face centre and the crop taken again (core/faces.py).
4. `gender_age.keras` gives the gender probabilities and the age; the age's error band in the app
   is the held-out RMSE ({metrics['age_rmse']:.1f} years).

## Data cleaning

| dataset | faces kept | rows dropped, by reason |
|---|---|---|
{drops}
"""
    card = publishing.model_card(
        "Age and gender with rotation correction",
        "Finds faces, straightens them with a rotation network, then predicts gender and age. "
        f"Backbone: {metadata['backbone']}.",
        metadata, tags=["age-estimation", "gender-classification", "face"], datasets=["imdb-wiki", "utkface"],
        metric_rows=rows, body=body,
    )
    extra = examples if examples is not None else held_out_examples(test_records)
    return publishing.write_bundle(out, {"rotation": rotation_model, "gender_age": gender_age_model}, metadata, card, extra)


def held_out_examples(test_records, count: int = 3, tilt: float = 25.0) -> dict:
    """A few held-out faces for the tab's examples; the first one also turned by `tilt` degrees."""
    extra = {}
    for index, record in enumerate(test_records[:count]):
        extra[f"examples/{record.path.name}"] = record.path.read_bytes()
        if index == 0:
            try:
                image = load_image(record.path)
            except ImageError:
                continue
            turned = faces.rotated_crop(image, (image.width / 2, image.height / 2), min(image.size), tilt)
            buffer = io.BytesIO()
            turned.save(buffer, format="PNG")
            extra[f"examples/tilted_{int(tilt)}_{Path(record.path.name).stem}.png"] = buffer.getvalue()
    return extra


def demo_examples(seed: int = 7, wanted: int = 3) -> dict:
    """Tilted drawn faces for the demo tab; faces the detector finds are preferred, so the demo
    shows the detector's box as well as the straightening."""
    from training.synthetic.faces import draw_face

    rng = np.random.default_rng(seed)
    chosen, fallback = {}, {}
    for attempt in range(30):
        gender, age, tilt = GENDERS[attempt % 2], int(rng.integers(15, 85)), float(rng.choice([-1, 1]) * rng.uniform(15, 40))
        image = draw_face(rng, gender, age, 192, tilt, face_fraction=0.42)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        name = f"examples/{gender.lower()}_{age}y_tilt_{tilt:+.0f}.png"
        found = [f for f in faces.detect_faces(image, max_faces=1) if math.dist(f.centre, (96, 96)) < 25]
        (chosen if found else fallback)[name] = buffer.getvalue()
        if len(chosen) >= wanted:
            break
    for name, content in fallback.items():
        if len(chosen) >= wanted:
            break
        chosen[name] = content
    return chosen


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on drawn faces in both layouts (see training/synthetic/faces.py:
    tilt real, gender = hair length and beard, age = grey hair and wrinkles)."""
    from training.synthetic.faces import make_imdb_wiki, make_utkface

    data = workdir / "faces"
    make_imdb_wiki(data, count=150, size=72, seed=0)
    make_utkface(data, count=150, size=72, seed=1)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "48",
          "--epochs", "10", "--patience", "5", "--fine-tune-epochs", "1", "--batch-size", "32", "--angle-bin", "5",
          "--demo"])
    # Swap the held-out crops for tilted drawn faces the detector finds: the demo shows every step.
    import json

    examples = out / "examples"
    for file in examples.iterdir():
        file.unlink()
    for name, content in demo_examples().items():
        (out / name).write_bytes(content)
    metadata = json.loads((out / "task.json").read_text())
    metadata["dataset"]["demo_faces"] = ("drawn faces: tilt real; gender = long hair (Female) or short hair "
                                         "and beard (Male); age = grey hair and wrinkles")
    (out / "task.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
