"""Dog breed identification on Stanford Dogs, by transfer learning.

    python -m training.dog_breed --data DIR --out models/dog_breed

DIR is the dataset as distributed: `Images/<wnid>-<Breed>/*.jpg`,
`Annotation/<wnid>-<Breed>/<file>` (Pascal VOC boxes) and, for the official
split, `train_list.mat` / `test_list.mat` (beside Images/ or in lists/). Without
the lists (the Kaggle copy) the split is stratified 80/10/10.

The recipe follows the course: EfficientNetB3 base, global pooling, a dense
layer, dropout, softmax over the breeds; augmentation layers; first the base
frozen, then the top of the base fine-tuned at a tenth of the learning rate;
EarlyStopping restores the best weights in both phases.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training import classification, evaluation, fitting, inputs, options, publishing
from training.datasets.stanford_dogs import read_stanford_dogs, readable_breed
from training.inputs import Sample

TASK = "dog_breed"


# --- data ------------------------------------------------------------------------------


# --- recipe ----------------------------------------------------------------------------

def main(argv=None):
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=300, default_backbone="efficientnetb3")
    parser.add_argument("--crop-boxes", action="store_true", help="train and test on the annotated dog boxes")
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data: the dataset as distributed, decoded once; unreadable files are reported and left out.
    folders, (train, val, test), split_name, report = read_stanford_dogs(args.data, args.crop_boxes, args.seed)
    breeds = [readable_breed(f) for f in folders]
    print(f"{len(breeds)} breeds; {len(train)} train, {len(val)} validation, {len(test)} test samples ({split_name})")
    x_train, y_train, skipped_train = inputs.load_images(train, size)
    x_val, y_val, skipped_val = inputs.load_images(val, size)
    x_test, y_test, skipped_test = inputs.load_images(test, size)
    report["unreadable_images"] = [f"{path}: {reason}" for path, reason in skipped_train + skipped_val + skipped_test]
    for kind, entries in report.items():
        if entries:
            print(f"skipped {len(entries)} ({kind.replace('_', ' ')}), e.g. {entries[0]}")
    if min(len(x_train), len(x_val), len(x_test)) == 0:
        raise SystemExit(f"Not enough readable images: {len(x_train)} train, {len(x_val)} validation, "
                         f"{len(x_test)} test; each split needs at least one (see the messages above)")

    # 2. Model.
    model, base = classification.build_classifier(len(breeds), args.image_size, args.backbone, args.weights,
                                          name="dog_breed", dense_units=512)

    # 3. Train: the new head on the frozen base, then the top of the base at a lower rate.
    fitting.fit_two_phases(model, base, args, (x_train, y_train), (x_val, y_val), classification.compile_classifier)

    # 4. Evaluate on the held-out test split.
    probabilities = model.predict(x_test, batch_size=args.batch_size, verbose=0)
    metrics = evaluation.classification_metrics(y_test, probabilities, breeds, k=5)
    print(f"test top-1 {metrics['top1_accuracy']:.3f}, top-5 {metrics['top5_accuracy']:.3f}, "
          f"macro precision {metrics['precision_macro']:.3f}, macro recall {metrics['recall_macro']:.3f}")

    # 5. The bundle: network, metadata, card, confusion matrix, a few held-out examples.
    used = [s.path for s in train + val + test]
    dataset = {"name": "Stanford Dogs", "images": len(set(used)), "split": split_name,
               "sha256": inputs.fingerprint(set(used), args.data), "crop_boxes": args.crop_boxes,
               "report": report}
    metadata = publishing.base_metadata(TASK, breeds, args.image_size, metrics, dataset, demo=args.demo,
                                    label_ids=[f.split("-", 1)[0] for f in folders], backbone=args.backbone)
    save(args.out, model, metadata, test)
    if args.push_to_hub:
        publishing.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def save(out: Path, model, metadata: dict, test: list[Sample]) -> Path:
    rows, body, extra = evaluation.classification_report_parts(metadata["metrics"], metadata["labels"], "breed")
    card = publishing.model_card(
        "Dog breed classifier (Stanford Dogs)",
        f"Predicts one of {len(metadata['labels'])} dog breeds from a photo. Backbone: {metadata['backbone']}.",
        metadata, tags=["stanford-dogs", "dog-breed"], datasets=["stanford-dogs"], metric_rows=rows, body=body,
    )
    extra.update(publishing.examples_per_class(test))
    return publishing.write_bundle(out, {"classifier": model}, metadata, card, extra)


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic dogs (one coat pattern per breed)."""
    from training.synthetic.dogs import make_stanford_dogs

    data = make_stanford_dogs(workdir / "stanford_dogs", breeds=6, per_breed=40, size=160)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "96",
          "--epochs", "20", "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
