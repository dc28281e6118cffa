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

import sys
from pathlib import Path

from training import classification, evaluation, fitting, inputs, options, publishing
from training.datasets.image_folders import builder_manifest, read_crops, readable_class
from training.datasets.report import report_problems
from training.datasets.splits import stratified_split

TASK = "sandwich"


def main(argv=None):
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=128, default_backbone="simple")
    parser.set_defaults(weights="none", epochs=50, patience=4, batch_size=16, fine_tune_epochs=0)
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data: the crops, split 80/10/10 per class, decoded once.
    folders, samples = read_crops(args.data)
    classes = [readable_class(f) for f in folders]
    train_idx, val_idx, test_idx = stratified_split([s.label for s in samples], (0.8, 0.1, 0.1), args.seed)
    splits = [[samples[i] for i in idx] for idx in (train_idx, val_idx, test_idx)]
    (x_train, y_train, bad_train), (x_val, y_val, bad_val), (x_test, y_test, bad_test) = (
        inputs.load_images(split, size) for split in splits)
    report = report_problems({"unreadable_images": [f"{p}: {r}" for p, r in bad_train + bad_val + bad_test]})
    print(f"{len(classes)} classes ({', '.join(classes)}); {len(x_train)} train, {len(x_val)} validation, {len(x_test)} test")
    if min(len(x_train), len(x_val), len(x_test)) == 0:
        raise SystemExit("Not enough readable crops: each split needs at least one")

    # 2. Model, 3. training with EarlyStopping.
    model, base = classification.build_classifier(len(classes), args.image_size, args.backbone, args.weights, name="sandwich")
    fitting.fit_two_phases(model, base, args, (x_train, y_train), (x_val, y_val), classification.compile_classifier)

    # 4. Evaluation on the test split: per-class precision and recall.
    probabilities = model.predict(x_test, batch_size=args.batch_size, verbose=0)
    metrics = evaluation.classification_metrics(y_test, probabilities, classes, k=min(5, len(classes)))
    print(f"test accuracy {metrics['top1_accuracy']:.3f} (chance {1 / len(classes):.3f}); " + ", ".join(
        f"{c}: precision {m['precision']:.2f} recall {m['recall']:.2f}" for c, m in metrics["per_class"].items()))

    # 5. The bundle.
    files = [s.path for s in samples]
    dataset = {"name": "Open Images crops", "images": len(files), "split": f"stratified 80/10/10, seed {args.seed}",
               "sha256": inputs.fingerprint(files, args.data), "report": report, **builder_manifest(args.data)}
    metadata = publishing.base_metadata(TASK, classes, args.image_size, metrics, dataset, demo=args.demo,
                                    label_ids=folders, backbone=args.backbone)
    rows, body, extra = evaluation.classification_report_parts(metrics, classes)
    card = publishing.model_card(
        f"{' or '.join(classes)}? (Open Images)",
        f"Classifies a photo as one of {', '.join(classes)}, trained on boxes cropped from Open Images. "
        f"Backbone: {args.backbone}.",
        metadata, tags=["open-images"], datasets=["open-images"], metric_rows=rows, body=body,
    )
    extra.update(publishing.examples_per_class(splits[2]))
    publishing.write_bundle(args.out, {"classifier": model}, metadata, card, extra)
    if args.push_to_hub:
        publishing.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic crops (round stacked burgers, triangular sandwiches)."""
    from training.synthetic.food import make_food_crops

    data = make_food_crops(workdir / "images_cropped", per_class=80, size=96)
    main(["--data", str(data), "--out", str(out), "--image-size", "64", "--epochs", "15", "--patience", "6", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
