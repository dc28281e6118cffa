"""Caries segmentation on dental radiographs with a U-Net.

    python -m training.caries_masks --annotations EXPORT --images DIR --out data/caries
    python -m training.caries --data data/caries --out models/caries

DIR holds `images/` and `masks/` (matched by file stem; a `_mask` suffix on the mask is
allowed) and, as training.caries_masks writes it, `classes.json` ({"classes":
["background", "caries", ...]}: pixel value -> name) and, where classes overlap,
`masks/<stem>.npy` one-hot masks. A plain images/ + masks/ pair without classes.json
works too: pixel values 1..K become "class 1".."class K", and 0/255 masks are binary.

The recipe follows the course and keras-io's U-Net: images letterboxed to a square
(aspect kept, core/segmentation.py), an encoder of conv blocks and poolings and a
decoder of transposed convolutions with skip connections (`--depth`, `--width`), or a
pretrained encoder (`--backbone mobilenetv2|efficientnetb0 --weights imagenet`). The
output is chosen from the data: one class -> one sigmoid; several exclusive classes ->
softmax over background + classes; classes that overlap somewhere -> one sigmoid per
class. Losses: Dice, IoU (Jaccard), pixel-wise cross-entropy with optional class
weights, and their sums. The decision threshold is tuned for the best mean Dice on the
validation images at their own size (restored as the app restores them); Dice and IoU per
class are reported on the held-out test images at their own size.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from core.segmentation import (
    Letterbox,
    blend,
    colors,
    letterbox,
    letterbox_mask,
    restore,
)
from training import backbones, evaluation, fitting, inputs, losses, options, publishing, recipe
from training.datasets.report import DropReport, report_problems
from training.datasets.segmentation_masks import Pair, load_pair, read_dataset, read_mask
from training.datasets.splits import stratified_split

TASK = "caries"
LOSSES = ("dice", "iou", "ce", "dice+ce", "iou+ce", "bce", "dice+bce", "iou+bce")
BACKBONES = ["unet", *backbones.ENCODER_FEATURES]
PREPROCESSING = {
    "decode": "core.images.load_image: EXIF orientation applied, any mode (16-bit grey included) to 8-bit RGB, "
              "long side capped at 2048 px",
    "resize": "letterbox (core/segmentation.py): aspect kept, long side scaled to the input size, centred on black",
    "pixels": "float32 RGB in 0..255; normalisation happens inside the model",
    "output": "crop the letterbox's content area, resize bilinearly to the image's size, then threshold",
}


# --- data ------------------------------------------------------------------------------


def split(pairs: list[Pair], seed: int):
    """Train, validation and test pairs, 80/10/10, images with and without lesions in proportion."""
    has_lesion = [int(np.asarray(Image.open(p.mask)).any()) if p.mask.suffix == ".png" else 1 for p in pairs]
    return tuple([pairs[i] for i in idx] for idx in stratified_split(has_lesion, (0.8, 0.1, 0.1), seed))


def letterboxed(pairs: list[Pair], num_classes: int, side: int, mirror: bool, cache: Path | None) -> inputs.DecodedRecords:
    """Each pair letterboxed as the app letterboxes an upload (core/segmentation.py): the image, and
    its per-class mask by nearest neighbour. With `mirror`, every pair appears a second time, to be
    mirrored (left and right jaws mirror each other); both share one decoded (and cached) entry."""

    def decode(record):
        picture, mask = load_pair(record[0], num_classes)
        return letterbox(picture, side)[0].astype(np.uint8), letterbox_mask(mask.astype(np.uint8), side)

    records = [(pair, False) for pair in pairs] + ([(pair, True) for pair in pairs] if mirror else [])
    return inputs.DecodedRecords(records, decode, f"letterbox {side} (core.segmentation), {num_classes} class mask", cache,
                         identity=lambda record: record[0])


def class_pixels(pairs: list[Pair], num_classes: int) -> tuple[np.ndarray, int]:
    """(pixels of each class, all pixels) over the training masks at their own size, read alone."""
    positives, total = np.zeros(num_classes), 0
    for pair in pairs:
        try:
            mask = read_mask(pair.mask, num_classes)
        except (OSError, ValueError):
            continue
        positives += mask.reshape(-1, num_classes).sum(axis=0)
        total += mask.shape[0] * mask.shape[1]
    return positives, total


def targets(masks: np.ndarray, activation: str) -> np.ndarray:
    """Per-class masks (..., K) -> what the network outputs: background + classes (softmax) or the
    classes (sigmoid)."""
    if activation == "softmax":
        background = 1 - masks.max(axis=-1, keepdims=True)
        return np.concatenate([background, masks], axis=-1).astype(np.uint8)
    return masks.astype(np.uint8)


EXTRA_HELP = ("a folder of more annotated radiographs in the layout --data takes (images/ + masks/, as "
              "training.caries_masks writes it, with the same classes), added to the training split only. "
              "The app's flagged folders carry no mask: caries cannot learn from a flag; annotate the flagged "
              "radiographs and convert them with training.caries_masks first")


def read_extra(folder: Path, labels: list[str]) -> tuple[list[Pair], bool, DropReport]:
    """The --extra-radiographs pairs, read by the same reader as --data; whether their classes overlap;
    what was left out. Classes must be --data's: a mask's pixel values mean its classes."""
    if (folder / "metadata.jsonl").is_file() and not (folder / "masks").is_dir():
        raise SystemExit(f"--extra-radiographs {folder} holds flags from the app, and a flag carries no mask: caries cannot "
                         f"learn from it. Annotate those radiographs (VoTT, LabelMe or COCO), convert them with "
                         f"`python -m training.caries_masks --annotations EXPORT --images {folder / 'images'} --out "
                         f"DIR`, and pass DIR")
    pairs, classes, origin, overlapping, found = read_dataset(folder)
    if classes != labels:
        raise SystemExit(f"--extra-radiographs {folder}: classes {classes} (from {origin}), but --data has {labels}; "
                         f"the same pixel value must mean the same class in both")
    dropped = DropReport()
    for name in found["images_without_mask"]:
        dropped.drop("image_without_mask", name)
    for name in found["masks_without_image"]:
        dropped.drop("mask_without_image", name)
    return pairs, overlapping, dropped


# --- model -----------------------------------------------------------------------------

def conv_block(x, filters: int, name: str):
    from keras import layers

    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)  # momentum: fitting.match_batchnorm
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(image_size: int, outputs: int, activation: str, depth: int = 4, width: int = 32,
               backbone: str = "unet", weights: str = "none"):
    """A U-Net: (model, encoder). The plain one: `depth` poolings, `width` filters on the first
    level, doubled per level. A pretrained encoder gives the skips at strides 2..2^depth."""
    import keras
    from keras import layers

    if image_size % (2 ** depth):
        raise SystemExit(f"--image-size {image_size} must be a multiple of 2^depth = {2 ** depth}")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    if backbone == "unet":
        if backbones.is_pretrained(weights):
            raise SystemExit("The plain 'unet' is trained from scratch: use --weights none.")
        x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        skips = []
        for level in range(depth):
            x = conv_block(x, width * 2 ** level, f"down{level}")
            skips.append(x)
            x = layers.MaxPooling2D(name=f"pool{level}")(x)
        x = conv_block(x, width * 2 ** depth, "bottom")
        encoder = None
    else:
        if not 1 <= depth <= 5:
            raise SystemExit(f"--depth {depth}: a pretrained encoder gives 1 to 5 levels")
        base = backbones.application(backbone, weights, (image_size, image_size, 3))
        names = backbones.ENCODER_FEATURES[backbone]
        encoder = keras.Model(base.input, [base.get_layer(n).output for n in names[:depth]], name=f"{backbone}_encoder")
        scaling = backbones.to_input_range(backbone)
        scaled = scaling(inputs) if scaling is not None else inputs
        features = encoder(scaled, training=False) if backbones.is_pretrained(weights) else encoder(scaled)
        features = features if isinstance(features, (list, tuple)) else [features]
        x = features[-1]
        skips = [None, *features[:-1]]  # the encoder's first features are at stride 2: no full-size skip
        if backbones.is_pretrained(weights):
            encoder.trainable = False
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(width * 2 ** level, 2, strides=2, padding="same", name=f"up{level}")(x)
        if skips[level] is not None:
            x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = conv_block(x, width * 2 ** level, f"dec{level}")
    # Lesions are a few percent of the pixels: start the output near that prior rather than at 0.5
    # (sigmoid), or with the background most likely (softmax), so early epochs are not spent unlearning it.
    prior = [-3.0] * outputs if activation == "sigmoid" else [3.0] + [0.0] * (outputs - 1)
    output = layers.Conv2D(outputs, 1, activation=activation, name="mask", dtype="float32",
                           bias_initializer=keras.initializers.Constant(prior))(x)
    return keras.Model(inputs, output, name=f"caries_{backbone}"), encoder


def parse_class_weights(text: str | None, positives: np.ndarray, total: int, activation: str) -> list[float] | None:
    """'auto' (training/losses.py: sqrt of negatives/positives per output channel, in [1, 50]), a
    comma list, or none. `positives` are the training pixels of each class, `total` all of them."""
    if not text:
        return None
    if activation == "softmax":
        positives = np.concatenate([[total - positives.sum()], positives])
    if text == "auto":
        return losses.class_weights(positives, total)
    weights = [float(w) for w in text.split(",")]
    if len(weights) != len(positives):
        names = "background, then each class" if activation == "softmax" else "one per class"
        raise SystemExit(f"--class-weights has {len(weights)} values; this data needs {len(positives)} ({names})")
    return weights


# --- evaluation ------------------------------------------------------------------------

def held_out(model, source: inputs.DecodedRecords, num_classes: int, side: int, batch_size: int):
    """Each held-out pair at its own size, as the app sees it: (pair, picture, true mask,
    probabilities restored from the letterbox). Streamed: one batch of images in memory at a time."""
    signature = inputs.image_signature(side)
    dataset = inputs.batches(source, lambda index, decoded, rng: decoded[0], signature, batch_size, with_index=True)
    for indices, outputs in inputs.predict_batches(model, dataset):
        for index, output in zip(indices, outputs):
            pair = source.records[index][0]
            picture, truth = load_pair(pair, num_classes)
            yield pair, picture, truth, restore(output, Letterbox.fit(picture.width, picture.height, side))


def overlay_pngs(shown, labels) -> dict:
    """For the card: annotation | prediction side by side, for the held-out images with most lesion."""
    extra = {}
    for rank, (_, picture, truth, predicted) in enumerate(shown):
        pair = Image.new("RGB", (picture.width * 2 + 4, picture.height), "white")
        pair.paste(blend(picture, truth, labels), (0, 0))
        pair.paste(blend(picture, predicted, labels), (picture.width + 4, 0))
        buffer = io.BytesIO()
        pair.save(buffer, format="PNG")
        extra[f"overlays/overlay_{rank}.png"] = buffer.getvalue()
    return extra


# --- recipe ----------------------------------------------------------------------------

def parser():
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=256, default_backbone="unet",
                                   backbones=BACKBONES, extra_option="--extra-radiographs",
                                   extra_help=EXTRA_HELP, extra_hub=False)
    parser.set_defaults(backbone="unet", weights=None, epochs=40, patience=8, batch_size=8, fine_tune_epochs=0,
                        learning_rate=3e-3)
    parser.add_argument("--loss", default="dice+ce", choices=LOSSES,
                        help="ce is binary cross-entropy per class (sigmoid) or categorical (softmax); bce is an alias")
    parser.add_argument("--class-weights", help="cross-entropy weights: 'auto' or comma-separated "
                                                "(softmax: background first; sigmoid: one per class, on positives)")
    parser.add_argument("--depth", type=int, default=4, help="number of down-sampling levels")
    parser.add_argument("--width", type=int, default=32, help="filters of the first level (doubled per level)")
    parser.add_argument("--no-flip", action="store_true", help="do not add mirrored copies of the training images")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.weights is None:
        args.weights = "none" if args.backbone == "unet" else "imagenet"
    side = args.image_size

    # 1. Data: image/mask pairs, every file read once (content hash, header check), split 80/10/10
    # keeping images with and without lesions in proportion, then streamed letterboxed. More
    # annotated radiographs (--extra-radiographs) join the training split only.
    pairs, labels, classes_origin, overlapping, report = read_dataset(args.data)
    extra, extra_overlapping, extra_dropped = read_extra(args.extra_data, labels) if args.extra_data else ([], False, None)
    images = [p.image for p in pairs + extra]
    scan = inputs.scan(images + [p.mask for p in pairs + extra], args.data, images=images, extra_root=args.extra_data)
    recorded = {"extra_data_sha256": inputs.fingerprint([f for p in extra for f in (p.image, p.mask)], args.extra_data)
                } if args.extra_data else {}
    setup = recipe.start(args, recorded)
    run, strategy, replicas, batch = setup.run, setup.strategy, setup.replicas, setup.batch
    pairs = [p for p in pairs if str(p.image) not in scan.unreadable]
    if len(pairs) < 3:
        raise SystemExit(f"{len(pairs)} readable image/mask pair(s) in {args.data}; at least 3 are needed "
                         f"(train, validation, test)")
    activation = "sigmoid" if len(labels) == 1 or overlapping or extra_overlapping else "softmax"
    train, val, test = split(pairs, args.seed)
    added = []
    if args.extra_data:
        held = {scan.digests[str(p.image)] for p in val + test}
        for pair in extra:
            if str(pair.image) in scan.unreadable:
                extra_dropped.drop("unreadable_image", f"{pair.image.name}: {scan.unreadable[str(pair.image)]}")
            elif scan.digests[str(pair.image)] in held:
                extra_dropped.drop("held_out_image", f"{pair.image.name} is a validation or test image")
            else:
                added.append(pair)
        train = train + added
        report["extra_data"] = {"folder": args.extra_data.name, "extra_examples": len(added), **extra_dropped.as_dict()}
        print(f"--extra-radiographs {args.extra_data}: {len(added)} annotated radiograph(s) added to the training split; "
              f"left out: {dict(extra_dropped.counts) or 'none'}")
    print(f"{len(labels)} class(es) ({', '.join(labels)}, from {classes_origin}): {activation} output; "
          f"{len(train)} train, {len(val)} validation, {len(test)} test images")
    channels = len(labels) + (activation == "softmax")
    train_pairs = letterboxed(train, len(labels), side, mirror=not args.no_flip, cache=args.cache)
    val_pairs, test_pairs = (letterboxed(part, len(labels), side, mirror=False, cache=args.cache) for part in (val, test))
    signature = (inputs.image_signature(side), inputs.image_signature(side, channels))

    def example(source):
        def make(index, decoded, rng):
            image, mask = decoded
            if source.records[index][1]:  # the mirrored copy
                image, mask = image[:, ::-1], mask[:, ::-1]
            return image, targets(mask, activation)
        return make

    # 2. Model.
    weights = parse_class_weights(args.class_weights, *class_pixels(train, len(labels)), activation)
    loss = losses.SegmentationLoss(args.loss, activation, weights)

    def compile_model(network, learning_rate):
        import keras

        network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)

    # 3. Train (a pretrained encoder first frozen, then its top fine-tuned).
    schedule = fitting.Schedule(args.epochs, args.fine_tune_epochs, args.learning_rate, args.patience,
                                args.fine_tune_fraction)
    with strategy.scope():
        model, encoder = build_unet(side, channels, activation, args.depth, args.width, args.backbone, args.weights)
        fitting.fit_two_phases(run, "segmenter", model, encoder,
                               inputs.batches(train_pairs, example(train_pairs), signature, batch, seed=args.seed,
                                              shard=fitting.shard_of(strategy), replicas=replicas),
                               inputs.batches(val_pairs, example(val_pairs), signature, batch, replicas=replicas),
                               compile_model,
                               schedule, backbones.is_pretrained(args.weights), -(-len(train_pairs) // batch))

    # 4. Evaluate: threshold tuned on the validation images, scores on the test images, both at their own size.
    threshold = evaluation.tune_threshold(held_out(model, val_pairs, len(labels), side, batch), activation, len(labels))
    metrics, shown = evaluation.segmentation_metrics(held_out(model, test_pairs, len(labels), side, batch), activation,
                                          threshold, labels)
    print(f"test mean Dice {metrics['dice_mean']:.3f}, mean IoU {metrics['iou_mean']:.3f} at threshold {threshold} "
          f"(baselines: empty mask 0.000, all-lesion {metrics['baselines']['all_lesion_dice']:.3f}); "
          + ", ".join(f"{c}: Dice {m['dice']:.3f} IoU {m['iou']:.3f}" for c, m in metrics["per_class"].items()))

    # 5. The bundle.
    unreadable = {**scan.unreadable, **train_pairs.problems, **val_pairs.problems, **test_pairs.problems}
    report["unreadable_pairs"] = [f"{Path(p).name}: {r}" for p, r in sorted(unreadable.items())]
    report = report_problems(report)
    dataset = {"name": "dental radiographs with caries masks", "images": len(pairs) + len(added),
               "split": f"80/10/10 stratified by lesion presence, seed {args.seed}", "classes_from": classes_origin,
               "split_sizes": {"train": len(train), "validation": len(val), "test": len(test)},
               "sha256": scan.sha256, "report": report}
    metadata = publishing.base_metadata(
        TASK, labels, side, metrics, dataset, options.command(__spec__.name, argv), demo=args.demo,
        backbone=args.backbone, activation=activation,
        output={"channels": channels, "background_channel": activation == "softmax"},
        colors=colors(labels), loss={"kind": args.loss, "class_weights": weights},
        architecture={"depth": args.depth, "width": args.width})
    metadata["preprocessing"] = PREPROCESSING
    metadata["thresholds"] = {"global": threshold}
    extra = overlay_pngs(shown, labels)
    for pair, *_ in shown if args.with_examples else ():  # the held-out images with most lesion
        extra[f"examples/{pair.image.name}"] = pair.image.read_bytes()
    publishing.release(run, args.out, {"segmenter": model}, metadata, card(metadata, extra, args.push_to_hub), extra,
                       args.push_to_hub, args.private)
    return metrics


def card(metadata: dict, extra: dict, repo: str | None) -> publishing.WrittenCard:
    metrics = metadata["metrics"]
    rows = [("Dice (mean over classes)", metrics["dice_mean"]), ("IoU (mean over classes)", metrics["iou_mean"]),
            ("pixel accuracy", metrics["pixel_accuracy"])]
    baselines = [("Dice, every pixel marked", metrics["baselines"]["all_lesion_dice"]),
                 ("Dice, empty mask", metrics["baselines"]["empty_mask_dice"])]
    per_class = "\n".join(f"| {c} | {m['dice']:.3f} | {m['iou']:.3f} | {100 * m['share_of_pixels']:.2f} % |"
                          for c, m in metrics["per_class"].items())
    overlays = "\n".join(f"![held-out overlay]({name})" for name in sorted(extra) if name.startswith("overlays/"))
    output = ("one sigmoid per class" if metadata["activation"] == "sigmoid"
              else "softmax over background + classes")
    body = f"""
## Per-class scores (held-out images at their own size, threshold {metrics['threshold']})

| class | Dice | IoU | share of pixels |
|---|---|---|---|
{per_class}

Baselines: an empty mask scores Dice 0; marking every pixel scores Dice {metrics['baselines']['all_lesion_dice']:.3f}.

## Network

U-Net ({metadata['backbone']}, depth {metadata['architecture']['depth']}, width {metadata['architecture']['width']}),
{output}; loss {metadata['loss']['kind']}. The network is at the repo's root (Keras' folder format). Images are letterboxed (aspect
kept, centred on black) to the input size; the output is cropped back and resized to the image's own size
(`core/segmentation.py`), then thresholded at `thresholds.global` in `task.json`.

## Held-out overlays (left: annotation, right: prediction)

{overlays}
"""
    text = publishing.model_card(
        "Caries segmentation (U-Net)",
        f"Marks {', '.join(metadata['labels'])} on dental radiographs, pixel by pixel.",
        metadata, tags=["dental", "radiograph", "caries", "u-net"], datasets=[], metric_rows=rows,
        baseline_rows=baselines, body=body,
        pipeline_tag="image-segmentation", usage=publishing.usage_snippet("segmentation", repo))
    return text


def build_demo(out: Path, workdir: Path):
    """The demo bundle: synthetic radiographs -> VoTT export -> masks -> this recipe."""
    from training import masks_from_annotations
    from training.synthetic.radiographs import make_caries_dataset

    images, export = make_caries_dataset(workdir / "radiographs", count=60, size=(128, 80), teeth=(2, 4))
    masks_from_annotations.main(["--annotations", str(export), "--images", str(images), "--out", str(workdir / "caries")])
    main(["--data", str(workdir / "caries"), "--out", str(out), "--image-size", "64", "--depth", "3", "--width", "8",
          "--epochs", "8", "--patience", "8", "--batch-size", "16", "--learning-rate", "0.005", "--with-examples",
          "--demo"])


if __name__ == "__main__":
    main()
