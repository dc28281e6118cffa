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

from core.images import ImageError
from core.segmentation import (
    Letterbox,
    blend,
    colors,
    lesion_masks,
    letterbox,
    letterbox_mask,
    restore,
)
from training import backbones, fitting, inputs, options, publishing
from training.datasets.report import report_problems
from training.datasets.segmentation_masks import Pair, load_pair, read_dataset
from training.datasets.splits import stratified_split

TASK = "caries"
LOSSES = ("dice", "iou", "ce", "dice+ce", "iou+ce", "bce", "dice+bce", "iou+bce")
ENCODERS = {  # pretrained encoders: feature layers at strides 2, 4, 8, 16, 32
    "mobilenetv2": ("MobileNetV2", True, ["block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                                          "block_13_expand_relu", "block_16_project"]),
    "efficientnetb0": ("EfficientNetB0", False, ["block2a_expand_activation", "block3a_expand_activation",
                                                 "block4a_expand_activation", "block6a_expand_activation",
                                                 "top_activation"]),
}
BACKBONES = ["unet", *ENCODERS]
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


def load_split(pairs: list[Pair], num_classes: int, side: int, keep_full: bool = False):
    """Letterboxed uint8 images and masks, and (for evaluation) the masks at full size."""
    images, masks, full, kept, skipped = [], [], [], [], []
    for pair in pairs:
        try:
            picture, mask = load_pair(pair, num_classes)
        except (ImageError, OSError, ValueError) as error:
            skipped.append(f"{pair.image.name}: {str(error).replace('the upload', pair.image.name)}")
            continue
        pixels, _ = letterbox(picture, side)
        images.append(pixels.astype(np.uint8))
        masks.append(letterbox_mask(mask.astype(np.uint8), side))
        kept.append(pair)
        if keep_full:
            full.append((picture, mask))
    x = np.stack(images) if images else np.zeros((0, side, side, 3), np.uint8)
    y = np.stack(masks) if masks else np.zeros((0, side, side, num_classes), np.uint8)
    return x, y, full, kept, skipped


def targets(masks: np.ndarray, activation: str) -> np.ndarray:
    """Per-class masks -> what the network outputs: background + classes (softmax) or the classes (sigmoid)."""
    if activation == "softmax":
        background = 1 - masks.max(axis=-1, keepdims=True)
        return np.concatenate([background, masks], axis=-1).astype(np.uint8)
    return masks.astype(np.uint8)


# --- model -----------------------------------------------------------------------------

def conv_block(x, filters: int, name: str):
    from keras import layers

    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
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
        constructor, unit_range, names = ENCODERS[backbone]
        base = _application(constructor, weights, image_size)
        encoder = keras.Model(base.input, [base.get_layer(n).output for n in names[:depth]], name=f"{backbone}_encoder")
        scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs) if unit_range else inputs
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


def _application(constructor: str, weights: str, image_size: int):
    import keras

    try:
        return getattr(keras.applications, constructor)(
            include_top=False, weights=backbones.weights_argument(weights, constructor.lower()),
            input_shape=(image_size, image_size, 3))
    except SystemExit:
        raise
    except Exception as error:
        if weights == "imagenet":
            raise SystemExit(
                f"Could not download ImageNet weights for {constructor} ({type(error).__name__}); download the "
                f"no-top .h5 file on a connected machine and pass --weights PATH, or use --backbone unet "
                f"--weights none.") from None
        raise


_LOSS_CLASS = []


def _register_loss():
    if _LOSS_CLASS:
        return _LOSS_CLASS[0]
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="caries")
    class SegmentationLoss(keras.losses.Loss):
        """Dice, IoU (Jaccard), pixel-wise cross-entropy, or a sum of an overlap loss and cross-entropy.

        Overlap losses are computed per foreground class over the whole batch (so an image
        without lesions does not give 0/0) and averaged; the background channel of a softmax
        is left out, as it would make them trivially good. Cross-entropy is binary per class
        (sigmoid) or categorical (softmax), each class weighted by `class_weights`.
        """

        def __init__(self, kind="dice+ce", activation="sigmoid", class_weights=None, smooth=1.0,
                     name="segmentation_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.kind, self.activation, self.smooth = kind, activation, float(smooth)
            self.class_weights = list(class_weights) if class_weights else None

        def call(self, y_true, y_pred):
            y_true = ops.cast(y_true, y_pred.dtype)
            y_pred = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
            total = 0.0
            first = 1 if self.activation == "softmax" else 0
            t, p = y_true[..., first:], y_pred[..., first:]
            intersection = ops.sum(t * p, axis=(0, 1, 2))
            sums = ops.sum(t, axis=(0, 1, 2)) + ops.sum(p, axis=(0, 1, 2))
            if "dice" in self.kind:
                total += 1.0 - ops.mean((2.0 * intersection + self.smooth) / (sums + self.smooth))
            if "iou" in self.kind:
                total += 1.0 - ops.mean((intersection + self.smooth) / (sums - intersection + self.smooth))
            if "ce" in self.kind:
                weights = ops.convert_to_tensor(self.class_weights or [1.0] * y_pred.shape[-1], y_pred.dtype)
                if self.activation == "softmax":
                    pixel = -ops.sum(weights * y_true * ops.log(y_pred), axis=-1)
                else:  # the weight multiplies each class's positive pixels
                    pixel = -ops.sum(weights * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred), axis=-1)
                total += ops.mean(pixel)
            return total

        def get_config(self):
            return {**super().get_config(), "kind": self.kind, "activation": self.activation,
                    "class_weights": self.class_weights, "smooth": self.smooth}

    _LOSS_CLASS.append(SegmentationLoss)
    return SegmentationLoss


def segmentation_loss(kind: str, activation: str, class_weights=None):
    return _register_loss()(kind=kind.replace("bce", "ce"), activation=activation, class_weights=class_weights)


def parse_class_weights(text: str | None, y_train: np.ndarray, activation: str) -> list[float] | None:
    """'auto' (sqrt of negatives/positives per channel, capped at 50), a comma list, or none."""
    if not text:
        return None
    channels = y_train.shape[-1]
    if text == "auto":
        positives = y_train.reshape(-1, channels).sum(axis=0).astype(float)
        negatives = y_train.shape[0] * y_train.shape[1] * y_train.shape[2] - positives
        return [float(min(50.0, np.sqrt(n / max(p, 1.0)))) for p, n in zip(positives, negatives)]
    weights = [float(w) for w in text.split(",")]
    if len(weights) != channels:
        names = "background, then each class" if activation == "softmax" else "one per class"
        raise SystemExit(f"--class-weights has {len(weights)} values; this data needs {channels} ({names})")
    return weights


# --- evaluation ------------------------------------------------------------------------

def overlap_counts(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per class (true positives, predicted, actual) pixel counts; masks are (..., K) boolean."""
    k = truth.shape[-1]
    t, p = truth.reshape(-1, k), predicted.reshape(-1, k)
    return np.stack([(t & p).sum(axis=0), p.sum(axis=0), t.sum(axis=0)], axis=1).astype(np.int64)


def scores_from_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU per class from pooled counts; a class absent from both truth and prediction scores 1."""
    tp, predicted, actual = counts[:, 0], counts[:, 1], counts[:, 2]
    union = predicted + actual - tp
    dice = np.where(predicted + actual > 0, 2 * tp / np.maximum(predicted + actual, 1), 1.0)
    iou = np.where(union > 0, tp / np.maximum(union, 1), 1.0)
    return dice, iou


def predict_full(model, full, side: int, batch_size: int) -> list[np.ndarray]:
    """Probabilities at each image's own size, through the same letterbox as the app."""
    x = np.stack([letterbox(picture, side)[0] for picture, _ in full])
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    return [restore(p, Letterbox.fit(picture.width, picture.height, side)) for p, (picture, _) in zip(probabilities, full)]


THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def tune_threshold(full, probabilities: list[np.ndarray], activation: str) -> float:
    """The threshold with the best mean Dice on the validation images, scored as the test images
    are and as the app applies it: on the probabilities restored to each image's own size.

    (Scoring on the letterboxed network output instead picks a different threshold: restoring
    resizes the probabilities bilinearly, which blurs a small lesion's edge over several pixels,
    so a threshold that costs nothing at the network's size dilates the mask at the image's.)
    Ties go to the threshold nearest 0.5."""
    counts = np.zeros((len(THRESHOLDS), full[0][1].shape[-1] if full else 1, 3), np.int64)
    for (_, truth), p in zip(full, probabilities):
        for index, threshold in enumerate(THRESHOLDS):
            counts[index] += overlap_counts(truth, lesion_masks(p, activation, float(threshold)))
    best, best_dice = 0.5, -1.0
    for index in np.argsort(np.abs(THRESHOLDS - 0.5), kind="stable"):
        dice, _ = scores_from_counts(counts[index])
        if dice.mean() > best_dice + 1e-9:
            best, best_dice = float(THRESHOLDS[index]), float(dice.mean())
    return best


def segmentation_metrics(full, probabilities, activation: str, threshold: float, labels: list[str]) -> dict:
    """Dice and IoU per class and their mean over the held-out images at their own size, with the
    two trivial baselines: an empty mask, and every pixel marked as each class."""
    counts = np.zeros((len(labels), 3), np.int64)
    pixels, correct = 0, 0
    for (_, truth), p in zip(full, probabilities):
        predicted = lesion_masks(p, activation, threshold)
        counts += overlap_counts(truth, predicted)
        pixels += truth.shape[0] * truth.shape[1]
        correct += int((truth == predicted).all(axis=-1).sum())
    dice, iou = scores_from_counts(counts)
    share = counts[:, 2] / max(pixels, 1)
    all_dice = 2 * share / (1 + share)
    return {
        "dice_mean": float(dice.mean()), "iou_mean": float(iou.mean()), "pixel_accuracy": float(correct / max(pixels, 1)),
        "test_images": len(full), "threshold": threshold,
        "per_class": {label: {"dice": float(d), "iou": float(j), "pixels_true": int(c[2]), "pixels_predicted": int(c[1]),
                              "share_of_pixels": float(s)}
                      for label, d, j, c, s in zip(labels, dice, iou, counts, share)},
        "baselines": {"empty_mask_dice": 0.0, "all_lesion_dice": float(all_dice.mean()),
                      "all_lesion_iou": float(share.mean())},
    }


def overlay_pngs(full, probabilities, activation, threshold, labels, count: int = 3) -> dict:
    """For the card: truth | prediction side by side, a few held-out images with the most lesion."""
    order = np.argsort([-truth.sum() for _, truth in full], kind="stable")[:count]
    extra = {}
    for rank, index in enumerate(order):
        picture, truth = full[index]
        predicted = lesion_masks(probabilities[index], activation, threshold)
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
                                  backbones=BACKBONES)
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
    args = parser().parse_args(argv)
    if args.weights is None:
        args.weights = "none" if args.backbone == "unet" else "imagenet"
    import keras

    keras.utils.set_random_seed(args.seed)
    side = args.image_size

    # 1. Data: image/mask pairs, split 80/10/10 keeping images with and without lesions in proportion.
    pairs, labels, classes_origin, overlapping, report = read_dataset(args.data)
    if len(pairs) < 3:
        raise SystemExit(f"{len(pairs)} image/mask pair(s) in {args.data}; at least 3 are needed (train, validation, test)")
    activation = "sigmoid" if len(labels) == 1 or overlapping else "softmax"
    train, val, test = split(pairs, args.seed)
    x_train, m_train, _, _, bad_train = load_split(train, len(labels), side)
    x_val, m_val, full_val, _, bad_val = load_split(val, len(labels), side, keep_full=True)
    x_test, _, full_test, test_kept, bad_test = load_split(test, len(labels), side, keep_full=True)
    report["unreadable_pairs"] = bad_train + bad_val + bad_test
    report = report_problems(report)
    if min(len(x_train), len(x_val), len(x_test)) == 0:
        raise SystemExit(f"Not enough readable pairs: {len(x_train)} train, {len(x_val)} validation, {len(x_test)} test")
    if not args.no_flip:  # left and right jaws mirror each other
        x_train, m_train = np.concatenate([x_train, x_train[:, :, ::-1]]), np.concatenate([m_train, m_train[:, :, ::-1]])
    y_train, y_val = targets(m_train, activation), targets(m_val, activation)
    print(f"{len(labels)} class(es) ({', '.join(labels)}, from {classes_origin}): {activation} output; "
          f"{len(train)} train, {len(val)} validation, {len(test)} test images")

    # 2. Model.
    channels = len(labels) + (activation == "softmax")
    model, encoder = build_unet(side, channels, activation, args.depth, args.width, args.backbone, args.weights)
    weights = parse_class_weights(args.class_weights, y_train, activation)
    loss = segmentation_loss(args.loss, activation, weights)

    def compile_model(network, learning_rate):
        network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)

    # 3. Train (a pretrained encoder first frozen, then its top fine-tuned).
    fitting.fit_two_phases(model, encoder, args, (x_train, y_train), (x_val, y_val), compile_model)

    # 4. Evaluate: threshold tuned on the validation images, scores on the test images, both at their own size.
    threshold = tune_threshold(full_val, predict_full(model, full_val, side, args.batch_size), activation)
    probabilities = predict_full(model, full_test, side, args.batch_size)
    metrics = segmentation_metrics(full_test, probabilities, activation, threshold, labels)
    print(f"test mean Dice {metrics['dice_mean']:.3f}, mean IoU {metrics['iou_mean']:.3f} at threshold {threshold} "
          f"(baselines: empty mask 0.000, all-lesion {metrics['baselines']['all_lesion_dice']:.3f}); "
          + ", ".join(f"{c}: Dice {m['dice']:.3f} IoU {m['iou']:.3f}" for c, m in metrics["per_class"].items()))

    # 5. The bundle.
    files = [p.image for p in pairs] + [p.mask for p in pairs]
    dataset = {"name": "dental radiographs with caries masks", "images": len(pairs),
               "split": f"80/10/10 stratified by lesion presence, seed {args.seed}", "classes_from": classes_origin,
               "sha256": inputs.fingerprint(files, args.data), "report": report}
    metadata = publishing.base_metadata(
        TASK, labels, side, metrics, dataset, demo=args.demo, backbone=args.backbone,
        activation=activation, output={"channels": channels, "background_channel": activation == "softmax"},
        colors=colors(labels), loss={"kind": args.loss, "class_weights": weights},
        architecture={"depth": args.depth, "width": args.width})
    metadata["preprocessing"] = PREPROCESSING
    metadata["thresholds"] = {"global": threshold}
    extra = overlay_pngs(full_test, probabilities, activation, threshold, labels)
    for index in np.argsort([-truth.sum() for _, truth in full_test], kind="stable")[:3]:  # those with most lesion
        extra[f"examples/{test_kept[index].image.name}"] = test_kept[index].image.read_bytes()
    publishing.write_bundle(args.out, {"segmenter": model}, metadata, card(metadata, extra), extra)
    if args.push_to_hub:
        publishing.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def card(metadata: dict, extra: dict) -> str:
    metrics = metadata["metrics"]
    rows = [("Dice (mean over classes)", metrics["dice_mean"]), ("IoU (mean over classes)", metrics["iou_mean"]),
            ("pixel accuracy", metrics["pixel_accuracy"])]
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
{output}; loss {metadata['loss']['kind']}. The network file is `segmenter.keras`. Images are letterboxed (aspect
kept, centred on black) to the input size; the output is cropped back and resized to the image's own size
(`core/segmentation.py`), then thresholded at `thresholds.global` in `task.json`.

## Held-out overlays (left: annotation, right: prediction)

{overlays}
"""
    text = publishing.model_card(
        "Caries segmentation (U-Net)",
        f"Marks {', '.join(metadata['labels'])} on dental radiographs, pixel by pixel.",
        metadata, tags=["dental", "radiograph", "caries", "u-net"], datasets=[], metric_rows=rows, body=body,
        pipeline_tag="image-segmentation", networks=("segmenter",))
    return text


def build_demo(out: Path, workdir: Path):
    """The demo bundle: synthetic radiographs -> VoTT export -> masks -> this recipe."""
    from training import masks_from_annotations
    from training.synthetic.radiographs import make_caries_dataset

    images, export = make_caries_dataset(workdir / "radiographs", count=60, size=(128, 80), teeth=(2, 4))
    masks_from_annotations.main(["--annotations", str(export), "--images", str(images), "--out", str(workdir / "caries")])
    main(["--data", str(workdir / "caries"), "--out", str(out), "--image-size", "64", "--depth", "3", "--width", "12",
          "--epochs", "12", "--patience", "5", "--batch-size", "16", "--learning-rate", "0.005", "--demo"])

if __name__ == "__main__":
    main(sys.argv[1:])
