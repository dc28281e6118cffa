"""What every training script shares: options, backbones, splits, image loading,
callbacks, metrics, provenance, the model card, writing the bundle, and publishing.

Each training script reads top to bottom as its recipe and calls these.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from core.bundle import save_bundle
from core.images import ImageError
from core.preprocess import PREPROCESSING, model_input

ROOT = Path(__file__).resolve().parent.parent


# --- options -------------------------------------------------------------------------

def common_parser(description: str, default_size: int, default_backbone: str,
                  backbones=None) -> argparse.ArgumentParser:
    """The options every recipe shares; `backbones` replaces the classifier backbones (e.g. U-Net encoders)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, type=Path, help="the dataset folder, as distributed")
    parser.add_argument("--out", required=True, type=Path, help="where to write the model bundle")
    parser.add_argument("--epochs", type=int, default=10, help="epochs with the backbone frozen")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="epochs with the top of the backbone unfrozen")
    parser.add_argument("--fine-tune-fraction", type=float, default=0.2, help="share of backbone layers to unfreeze")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=default_size, help="square input side in pixels")
    parser.add_argument("--backbone", default=default_backbone, choices=sorted(backbones or BACKBONES))
    parser.add_argument("--weights", default="imagenet", help="imagenet, none, or a path to a no-top weights file")
    parser.add_argument("--patience", type=int, default=5, help="EarlyStopping patience (epochs)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the bundle to this Hub model repo")
    parser.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)  # set by training.demo: synthetic data
    return parser


# --- backbones -------------------------------------------------------------------------
# Each backbone takes float RGB in 0..255; what it needs beyond that is a layer inside
# the model (EfficientNet normalises internally; MobileNetV2 and Xception want -1..1).

def _small_cnn(input_shape, weights):
    """The course's CNN from scratch: four conv blocks; for quick runs and tests."""
    import keras
    from keras import layers

    if weights not in ("none", None):
        raise SystemExit("The 'small' backbone is trained from scratch: use --weights none.")
    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (16, 32, 64, 128):
        blocks += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),  # few steps per epoch on small data
            layers.Activation("relu"),
            layers.MaxPooling2D(),
        ]
    blocks.append(layers.GlobalAveragePooling2D())
    return keras.Sequential(blocks, name="small_cnn")


def _scratch_cnn(input_shape, weights):
    """The movie-poster course's CNN from scratch: four 5x5 conv blocks, then dense 128 and 64."""
    import keras
    from keras import layers

    if weights not in ("none", None):
        raise SystemExit("The 'scratch' backbone is trained from scratch: use --weights none.")
    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (16, 32, 64, 64):
        blocks += [layers.Conv2D(filters, 5, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.25)]
    blocks += [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
               layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return keras.Sequential(blocks, name="scratch_cnn")


def _simple_cnn(input_shape, weights):
    """The Open Images course's small CNN: three conv blocks, one dense layer, strong dropout."""
    import keras
    from keras import layers

    if weights not in ("none", None):
        raise SystemExit("The 'simple' backbone is trained from scratch: use --weights none.")
    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (32, 32, 64):
        blocks += [layers.Conv2D(filters, 3, activation="relu"), layers.MaxPooling2D()]
    blocks += [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return keras.Sequential(blocks, name="simple_cnn")


def _application(name, scale_to_unit_range):
    def build(input_shape, weights):
        import keras
        from keras import layers

        constructor = getattr(keras.applications, name)
        base = constructor(include_top=False, weights=weights_argument(weights, name), input_shape=input_shape, pooling="avg")
        if not scale_to_unit_range:
            return base
        inputs = keras.Input(input_shape)
        outputs = base(layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs))
        return keras.Model(inputs, outputs, name=base.name)

    return build


BACKBONES = {
    "efficientnetb0": _application("EfficientNetB0", False),
    "efficientnetb3": _application("EfficientNetB3", False),
    "mobilenetv2": _application("MobileNetV2", True),
    "xception": _application("Xception", True),
    "small": _small_cnn,
    "scratch": _scratch_cnn,
    "simple": _simple_cnn,
}


def weights_argument(weights, name):
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not Path(weights).is_file():
        raise SystemExit(f"--weights {weights}: no such file (expected {name} no-top weights, .h5)")
    return str(weights)


def build_backbone(name: str, weights: str, input_shape):
    try:
        return BACKBONES[name](input_shape, weights)
    except SystemExit:
        raise
    except Exception as error:
        if weights == "imagenet":
            raise SystemExit(
                f"Could not download ImageNet weights for {name} ({type(error).__name__}); download the "
                f"no-top .h5 file from the Keras applications release on a connected machine and pass "
                f"--weights PATH, or train from scratch with --weights none."
            ) from None
        raise


def is_pretrained(weights) -> bool:
    return weights not in (None, "none")


def leaf_layers(model) -> list:
    """A backbone's layers in order, looking inside nested models (our wrappers hold a
    keras.applications network as one layer, so counting the wrapper's layers would not do)."""
    leaves = []
    for layer in model.layers:
        if getattr(layer, "layers", None):
            leaves += leaf_layers(layer)
        else:
            leaves.append(layer)
    return leaves


def unfreeze_top(base, fraction: float) -> int:
    """Unfreeze the top `fraction` of the backbone's layers, BatchNorm excepted (keras-io recipe)."""
    base.trainable = True
    for layer in base.layers:
        if getattr(layer, "layers", None):
            layer.trainable = True
    leaves = leaf_layers(base)
    cut = int(len(leaves) * (1.0 - fraction))
    count = 0
    for index, layer in enumerate(leaves):
        layer.trainable = index >= cut and layer.__class__.__name__ != "BatchNormalization"
        count += layer.trainable
    return count


def fit_two_phases(model, base, args, train, val, compile_model, epochs=None, fine_tune_epochs=None,
                   first_phase_fraction: float = 0.0):
    """Phase 1: train the head on a frozen pretrained base (or its top `first_phase_fraction`
    too, as the age & gender course does), or everything from scratch.
    Phase 2: unfreeze the top `--fine-tune-fraction` of a pretrained base and go on at a tenth of the rate.
    `train` is (x, y) arrays or a tf.data.Dataset; epochs default to --epochs / --fine-tune-epochs."""
    epochs = args.epochs if epochs is None else epochs
    fine_tune_epochs = args.fine_tune_epochs if fine_tune_epochs is None else fine_tune_epochs
    fit = dict(validation_data=val, verbose=2)
    if isinstance(train, tuple):
        fit["batch_size"] = args.batch_size
    else:
        train = (train,)
    if is_pretrained(args.weights) and first_phase_fraction > 0:
        print(f"Phase 1: the head and the top {unfreeze_top(base, first_phase_fraction)} backbone layers train")
    compile_model(model, args.learning_rate)
    model.fit(*train, epochs=epochs, callbacks=[early_stopping(args.patience)], **fit)
    if fine_tune_epochs <= 0:
        return
    if is_pretrained(args.weights):
        unfrozen = unfreeze_top(base, args.fine_tune_fraction)
        print(f"Fine-tuning: {unfrozen} backbone layers unfrozen, learning rate {args.learning_rate / 10:g}")
    else:
        print(f"Continuing the from-scratch network at learning rate {args.learning_rate / 10:g}")
    compile_model(model, args.learning_rate / 10)
    model.fit(*train, epochs=fine_tune_epochs, callbacks=[early_stopping(args.patience)], **fit)


def backbone_features(image_size: int, backbone: str, weights: str, augmentation: list):
    """Input, augmentation layers, backbone (preprocessing inside): (inputs, features, backbone).

    A pretrained backbone starts frozen and runs in inference mode, so its BatchNorm
    statistics from ImageNet are kept, also when its top is unfrozen for fine-tuning."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.Sequential(augmentation, name="augmentation")(inputs)
    base = build_backbone(backbone, weights, (image_size, image_size, 3))
    if is_pretrained(weights):
        base.trainable = False
        x = base(x, training=False)
    else:
        x = base(x)
    return inputs, x, base


def build_classifier(num_classes: int, image_size: int, backbone: str, weights: str, name: str,
                     dense_units: int = 0):
    """Single-label classifier: backbone features, optional dense + dropout, softmax."""
    import keras
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.15),
                    layers.RandomContrast(0.2)]
    inputs, x, base = backbone_features(image_size, backbone, weights, augmentation)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="class")(x)
    return keras.Model(inputs, outputs, name=name), base


def compile_classifier(model, learning_rate: float):
    import keras

    metrics = ["accuracy"]
    if model.output_shape[-1] > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=metrics)


def early_stopping(patience: int):
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)


# --- data ------------------------------------------------------------------------------

@dataclass
class Sample:
    path: Path
    label: int
    box: tuple | None = None  # (left, top, right, bottom) in the frame below
    frame: tuple | None = None  # (width, height) the box was annotated in


def stratified_split(labels, fractions=(0.8, 0.1, 0.1), seed=0):
    """Index arrays for each fraction, every class divided in the same proportions."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.round(np.cumsum(fractions) / np.sum(fractions) * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, bounds[:-1])):
            part.extend(chunk.tolist())
    return [np.array(sorted(part), dtype=int) for part in parts]


def load_images(samples: list[Sample], size: tuple[int, int], workers: int = 4):
    """Decode and resize every sample once, in threads (Pillow releases the GIL).

    Returns (uint8 array N x H x W x 3, labels, skipped) where `skipped` lists
    (path, reason) for the files that could not be read; they are left out.
    """

    def decode(sample):
        try:
            return model_input(sample.path, size, sample.box, sample.frame).astype(np.uint8), None
        except ImageError as error:
            return None, str(error)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, samples))
    kept = [(pixels, sample.label) for (pixels, _), sample in zip(results, samples) if pixels is not None]
    skipped = [(str(sample.path), reason) for (pixels, reason), sample in zip(results, samples) if pixels is None]
    images = np.stack([pixels for pixels, _ in kept]) if kept else np.zeros((0, *size, 3), np.uint8)
    labels = np.array([label for _, label in kept], dtype=np.int64)
    return images, labels, skipped


MAX_LISTED = 50  # entries listed per problem in a data report; all are counted


def report_problems(report: dict, limit: int = MAX_LISTED) -> dict:
    """Print each listed problem's count with an example; keep every count, list at most `limit`."""
    for key, entries in list(report.items()):
        if isinstance(entries, list):
            if entries:
                print(f"  {len(entries)} {key.replace('_', ' ')}, e.g. {entries[0]}")
            report[f"{key}_count"] = len(entries)
            report[key] = entries[:limit]
    return report


def fingerprint(files, root: Path) -> str:
    """SHA-256 over the sorted relative paths and bytes of the files a model was trained on."""
    digest = hashlib.sha256()
    for file in sorted(Path(f) for f in files):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# --- evaluation ------------------------------------------------------------------------

def classification_metrics(y_true, probabilities, labels: list[str], k: int = 5) -> dict:
    """Top-1/top-k accuracy, macro and micro precision/recall, a per-class report and the confusion matrix."""
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    true_positive = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros(n), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = actual > 0
    top_k = np.argsort(-probabilities, axis=1)[:, : min(k, n)]
    total = max(len(y_true), 1)
    return {
        "top1_accuracy": float(true_positive.sum() / total),
        f"top{k}_accuracy": float(np.mean([t in row for t, row in zip(y_true, top_k)])) if len(y_true) else 0.0,
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
        # In single-label classification micro precision and micro recall both equal accuracy.
        "precision_micro": float(true_positive.sum() / total),
        "recall_micro": float(true_positive.sum() / total),
        "test_images": int(len(y_true)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, actual)
        },
        "confusion_matrix": confusion.tolist(),
    }


def classification_report_parts(metrics: dict, labels: list[str], label_name: str = "class"):
    """Card rows, the card's per-class and confusion-matrix sections, and the matrix image."""
    k = 5 if len(labels) > 5 else None
    rows = [("top-1 accuracy", metrics["top1_accuracy"])]
    if k:
        rows.append(("top-5 accuracy", metrics["top5_accuracy"]))
    rows += [("precision (macro)", metrics["precision_macro"]), ("recall (macro)", metrics["recall_macro"]),
             ("precision (micro)", metrics["precision_micro"]), ("recall (micro)", metrics["recall_micro"])]
    per_class = "\n".join(
        f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for label, m in metrics["per_class"].items()
    )
    body = (f"\n## Per-class report\n\n| {label_name} | precision | recall | f1 | support |\n|---|---|---|---|---|\n"
            f"{per_class}\n\n## Confusion matrix\n\n![confusion matrix](confusion_matrix.png)\n")
    extra = {"confusion_matrix.png": confusion_matrix_png(metrics["confusion_matrix"], labels)}
    return rows, body, extra


def examples_per_class(samples, count: int = 3) -> dict:
    """One held-out image for each of the first `count` classes, for the app's examples."""
    extra, seen = {}, set()
    for sample in samples:
        if sample.label not in seen and len(seen) < count:
            seen.add(sample.label)
            extra[f"examples/{Path(sample.path).name}"] = Path(sample.path).read_bytes()
    return extra


def confusion_matrix_png(confusion, labels: list[str], cell: int = 0) -> bytes:
    """Row-normalised confusion matrix as a PNG (dark = frequent); class names when few enough."""
    from PIL import Image, ImageDraw

    confusion = np.asarray(confusion, dtype=float)
    n = len(labels)
    cell = cell or max(4, min(32, 720 // max(n, 1)))
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    margin = 150 if n <= 40 else 10
    side = margin + n * cell + 10
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for i in range(n):
        for j in range(n):
            shade = int(255 * (1 - rows[i, j]))
            x, y = margin + j * cell, margin + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255 if i == j else shade))
    if margin > 10:
        for i, label in enumerate(labels):
            draw.text((4, margin + i * cell + cell // 2 - 5), label[:22], fill="black")
        draw.text((margin, 8), "predicted -> (rows: true class)", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- provenance, card, bundle, Hub -----------------------------------------------------

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow", "scipy", "huggingface-hub")


def provenance() -> dict:
    def git(*args):
        try:
            result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return result.stdout.strip() if result.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    revision = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            pass
    return {
        "code_revision": revision + ("-dirty" if dirty else ""),
        "packages": versions,
        "command": " ".join(["python -m " + Path(sys.argv[0]).with_suffix("").name, *sys.argv[1:]]),
    }


def model_card(title: str, summary: str, metadata: dict, tags: list[str], datasets: list[str],
               metric_rows: list[tuple[str, float]], body: str = "",
               pipeline_tag: str = "image-classification", networks=("classifier",)) -> str:
    """A Hub model card: front matter from huggingface_hub's ModelCardData, then the evaluation table."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="keras",
        pipeline_tag=pipeline_tag,
        tags=["keras", pipeline_tag, *tags],
        datasets=datasets,
        metrics=sorted({name.split(" ")[0].lower() for name, _ in metric_rows}),
    )
    table = "\n".join(f"| {name} | {value:.4f} |" for name, value in metric_rows)
    dataset = metadata["dataset"]
    prov = metadata["provenance"]
    loading = " and ".join(f'`keras.saving.load_model("{name}.keras", safe_mode=True)`' for name in networks)
    demo = "\n> **Demo model trained on synthetic data — its predictions mean nothing.**\n" if metadata.get("demo") else ""
    text = f"""---
{data.to_yaml()}
---

# {title}
{demo}
{summary}

## Evaluation (held-out test split)

| metric | value |
|---|---|
{table}

## Training data

{dataset['name']} — {dataset.get('images', '?')} images, split: {dataset.get('split', '?')}.
Content hash (SHA-256 of paths and bytes): `{dataset.get('sha256', '?')}`.

## Inputs

RGB image resized to {metadata['input']['size'][0]} x {metadata['input']['size'][1]}, float pixels in 0..255;
normalisation is inside the network. Load with
{loading}; labels in output order are in `task.json`.

## Reproduce

```
{prov['command']}
```

Code revision `{prov['code_revision']}`; packages: {', '.join(f'{k} {v}' for k, v in prov['packages'].items())}.
{body}
"""
    return str(ModelCard(text))


def base_metadata(task: str, labels: list[str], size: int, metrics: dict, dataset: dict, demo: bool = False,
                  **extra) -> dict:
    return {
        "task": task,
        "labels": labels,
        "input": {"size": [size, size], "channels": 3},
        "preprocessing": PREPROCESSING,
        "thresholds": {},
        "metrics": metrics,
        "dataset": dataset,
        "provenance": provenance(),
        "demo": demo,
        **extra,
    }


def write_bundle(out: Path, networks: dict, metadata: dict, card: str, extra_files=None) -> Path:
    path = save_bundle(out, networks, metadata, card, extra_files)
    print(f"Model bundle written to {path}")
    return path


def push_to_hub(folder: Path, repo_id: str, task: str) -> str:
    """Create the repo if needed and upload the bundle folder; returns the commit to pin."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=f"Upload {folder.name} model bundle")
    commit = info.oid
    print(f"Pushed to {repo_id} at commit {commit}. To serve it, pin it in models/hub.json:")
    print(f'  "{task}": {{"repo_id": "{repo_id}", "revision": "{commit}"}}')
    return commit
