"""Hamburger or sandwich? A classifier on crops carved out of Open Images.

    python -m training.open_images --classes "Hamburger" "Sandwich" --meta META --out data/sandwich
    python -m training.sandwich --data data/sandwich/images_cropped --out models/sandwich

DIR is `images_cropped/<class>/*.jpg` as training.open_images writes it (any
number of classes, one folder each). The recipe follows the course: a small CNN
(three convolution blocks, one dense layer, dropout) with augmentation, trained
with EarlyStopping (patience 4) — or a transfer-learning backbone with
`--backbone efficientnetb0 --weights imagenet`. The split is stratified
80/10/10. When the builder's manifest.json sits beside images_cropped/, its
hash and sources go into the bundle, so {data, code, environment} rebuild it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from training import common
from training.common import Sample

TASK = "sandwich"


def readable_class(folder: str) -> str:
    """'hamburger' -> 'Hamburger', 'hot_dog' -> 'Hot dog'."""
    name = folder.replace("_", " ").strip()
    return name[:1].upper() + name[1:]


def read_crops(data: Path):
    """Class folders and one sample per file."""
    if not data.is_dir():
        raise SystemExit(f"{data} is not a folder: expected images_cropped/<class>/*.jpg from training.open_images")
    folders = sorted(p.name for p in data.iterdir() if p.is_dir() and any(p.iterdir()))
    if len(folders) < 2:
        raise SystemExit(f"{data} holds {len(folders)} non-empty class folder(s); at least two are needed")
    samples = [Sample(path, label) for label, folder in enumerate(folders)
               for path in sorted((data / folder).iterdir()) if path.is_file()]
    return folders, samples


def builder_manifest(data: Path) -> dict:
    """The Open Images builder's manifest beside the crops, summarised, if there is one."""
    manifest = data.parent / "manifest.json"
    if not manifest.is_file():
        return {}
    content = manifest.read_bytes()
    summary = json.loads(content)
    return {"manifest_sha256": hashlib.sha256(content).hexdigest(),
            "sources": summary.get("sources"), "classes": summary.get("classes")}


def main(argv=None):
    parser = common.common_parser(__doc__.split("\n\n")[0], default_size=128, default_backbone="simple")
    parser.set_defaults(weights="none", epochs=50, patience=4, batch_size=16, fine_tune_epochs=0)
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data: the crops, split 80/10/10 per class, decoded once.
    folders, samples = read_crops(args.data)
    classes = [readable_class(f) for f in folders]
    train_idx, val_idx, test_idx = common.stratified_split([s.label for s in samples], (0.8, 0.1, 0.1), args.seed)
    splits = [[samples[i] for i in idx] for idx in (train_idx, val_idx, test_idx)]
    (x_train, y_train, bad_train), (x_val, y_val, bad_val), (x_test, y_test, bad_test) = (
        common.load_images(split, size) for split in splits)
    report = common.report_problems({"unreadable_images": [f"{p}: {r}" for p, r in bad_train + bad_val + bad_test]})
    print(f"{len(classes)} classes ({', '.join(classes)}); {len(x_train)} train, {len(x_val)} validation, {len(x_test)} test")
    if min(len(x_train), len(x_val), len(x_test)) == 0:
        raise SystemExit("Not enough readable crops: each split needs at least one")

    # 2. Model, 3. training with EarlyStopping.
    model, base = common.build_classifier(len(classes), args.image_size, args.backbone, args.weights, name="sandwich")
    common.fit_two_phases(model, base, args, (x_train, y_train), (x_val, y_val), common.compile_classifier)

    # 4. Evaluation on the test split: per-class precision and recall.
    probabilities = model.predict(x_test, batch_size=args.batch_size, verbose=0)
    metrics = common.classification_metrics(y_test, probabilities, classes, k=min(5, len(classes)))
    print(f"test accuracy {metrics['top1_accuracy']:.3f} (chance {1 / len(classes):.3f}); " + ", ".join(
        f"{c}: precision {m['precision']:.2f} recall {m['recall']:.2f}" for c, m in metrics["per_class"].items()))

    # 5. The bundle.
    files = [s.path for s in samples]
    dataset = {"name": "Open Images crops", "images": len(files), "split": f"stratified 80/10/10, seed {args.seed}",
               "sha256": common.fingerprint(files, args.data), "report": report, **builder_manifest(args.data)}
    metadata = common.base_metadata(TASK, classes, args.image_size, metrics, dataset, demo=args.demo,
                                    label_ids=folders, backbone=args.backbone)
    rows, body, extra = common.classification_report_parts(metrics, classes)
    card = common.model_card(
        f"{' or '.join(classes)}? (Open Images)",
        f"Classifies a photo as one of {', '.join(classes)}, trained on boxes cropped from Open Images. "
        f"Backbone: {args.backbone}.",
        metadata, tags=["open-images"], datasets=["open-images"], metric_rows=rows, body=body,
    )
    extra.update(common.examples_per_class(splits[2]))
    common.write_bundle(args.out, {"classifier": model}, metadata, card, extra)
    if args.push_to_hub:
        common.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic crops (round stacked burgers, triangular sandwiches)."""
    from training.synthetic import make_food_crops

    data = make_food_crops(workdir / "images_cropped", per_class=80, size=96)
    main(["--data", str(data), "--out", str(out), "--image-size", "64", "--epochs", "15", "--patience", "6", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
