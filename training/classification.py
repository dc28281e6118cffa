"""The single-label classification recipe, shared by every single-label task.

A task's recipe (dog_breed.py, sandwich.py) reads its dataset as distributed into samples and
class names; `train` does the rest, in the keras-io order:

1. data: one pass over the files (content hash, unreadable files), then streaming batches;
   corrections flagged in the app (--flags) join the training split, never the held-out ones;
2. model: backbone features (preprocessing inside), an optional dense layer, softmax;
3. training: the two-phase transfer-learning schedule, resumable, on every device there is; with
   several --backbone names, each in turn on the same split, the best by validation accuracy kept;
4. evaluation on the held-out test split;
5. the bundle: network, task.json, card, confusion matrix, training history, the comparison
   table if any; optionally the Hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.atomic import write_atomic
from training import evaluation, fitting, inputs, options, publishing, recipe
from training.backbones import ALIASES, SCRATCH, backbone_features, imagenet_head, is_pretrained, weights_provenance
from training.datasets.flagged import read_flagged
from training.datasets.report import readable_path, report_problems
from training.inputs import Sample


@dataclass
class Data:
    """A dataset read by its reader: class names in output order and three lists of samples."""

    name: str
    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    split: str  # how the splits were made, for the card
    report: dict = field(default_factory=dict)  # what the reader left out, by kind
    extra_files: list[Path] = field(default_factory=list)  # label files etc., part of the content hash
    details: dict = field(default_factory=dict)  # more for task.json's "dataset" entry


def build_classifier(num_classes: int, image_size: int, backbone: str, weights: str, name: str,
                     dense_units: int = 0, imagenet_rows: list | None = None):
    """Backbone features, optional dense + dropout, softmax: (model, backbone).

    With `imagenet_rows` (each class's ImageNet output, None for a class ImageNet lacks) and a
    backbone whose ImageNet head came with its weights (EfficientNet-Lite0), the head starts as
    ImageNet's own rows for those classes, reading the pooled features directly: a dog-breed model
    knows the breeds before it sees a picture of the dataset."""
    import keras
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.15),
                    layers.RandomContrast(0.2)]
    inputs_, x, base = backbone_features(image_size, backbone, weights, augmentation)
    head = imagenet_head(backbone, weights) if imagenet_rows else None
    if head is not None:
        logits = layers.Dense(num_classes, name="class_logits", dtype="float32")
        outputs = layers.Softmax(name="class", dtype="float32")(logits(x))
        kernel, bias = logits.get_weights()
        for column, row in enumerate(imagenet_rows):
            if row is not None:
                kernel[:, column], bias[column] = head[0][:, row], head[1][row]
        logits.set_weights([kernel, bias])
        return keras.Model(inputs_, outputs, name=name), base
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="class", dtype="float32")(x)
    return keras.Model(inputs_, outputs, name=name), base


@dataclass(frozen=True)
class Detector:
    """A second output a classifier can carry: the probability, by ImageNet's own head on the same
    features, that the picture shows any of ImageNet's classes `rows` (the dog breeds: "is it a dog
    at all?"). Frozen: it is ImageNet's judgement, not the dataset's."""

    name: str
    rows: tuple


def with_detector(model, backbone: str, weights: str, detector: Detector | None):
    """The classifier as its bundle holds it: `model` itself, or, with a `detector` and a backbone
    whose ImageNet head came with its weights, {"class": its output, detector.name: P(any of rows)}."""
    import keras
    from keras import layers

    head = imagenet_head(backbone, weights) if detector else None
    if head is None or "class_logits" not in {layer.name for layer in model.layers}:
        return model
    features = model.get_layer("class_logits").input
    imagenet = layers.Dense(1000, trainable=False, name="imagenet_logits", dtype="float32")
    probabilities = layers.Softmax(name="imagenet", dtype="float32")(imagenet(features))
    summed = layers.Dense(1, use_bias=False, trainable=False, name=detector.name, dtype="float32")
    found = summed(probabilities)
    imagenet.set_weights(list(head))
    indicator = np.zeros((1000, 1), np.float32)
    indicator[list(detector.rows), 0] = 1.0
    summed.set_weights([indicator])
    return keras.Model(model.inputs, {"class": model.output, detector.name: found}, name=model.name)


def compile_classifier(model, learning_rate: float):
    import keras

    metrics = ["accuracy"]
    if model.output_shape[-1] > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=metrics)


def train(task: str, data: Data, card: publishing.Card, args, command: str, dense_units: int = 0, label_ids=None,
          imagenet_rows: list | None = None, detector: Detector | None = None) -> dict:
    """Train, evaluate and save a classifier for `data` with the recipe's options `args`; returns
    the held-out metrics. With several --backbone names, each trains on the same split and the one
    with the best validation accuracy is kept (`compare`). `imagenet_rows` and `detector`: see
    build_classifier and with_detector (they apply where the backbone brings an ImageNet head)."""
    import keras
    import tensorflow as tf

    backbones = distinct(args.backbone)
    flagged = read_flagged(args.extra_data, task, "single", data.classes) if args.extra_data else None
    recorded = {"extra_data_sha256": flagged.sha256} if flagged else {}
    setup = recipe.start(args, {"backbone": backbones[0], **recorded}, one_run=len(backbones) == 1)
    run, strategy, replicas, batch = setup.run, setup.strategy, setup.replicas, setup.batch

    # 1. Data: every file read once (content hash, header check); images streamed from disk. Flagged
    # corrections join the training split only, so the held-out figures stay comparable.
    images = [s.path for s in data.train + data.val + data.test]
    extra_images = [flag.path for flag in flagged.flags] if flagged else []
    scan = inputs.scan(images + extra_images + data.extra_files + (flagged.files if flagged else []), data.root,
                       images=images + extra_images, extra_root=flagged.folder if flagged else None)
    extra = []
    if flagged:
        flagged.leave_out_held_out(scan.digests, [s.path for s in data.val + data.test])
        extra = [Sample(flag.path, flag.correction) for flag in flagged.flags]
        print(flagged.describe())
    splits = [[s for s in split if str(s.path) not in scan.unreadable]
              for split in (data.train + extra, data.val, data.test)]
    if min(map(len, splits)) == 0:
        raise SystemExit(f"Not enough readable images: {', '.join(str(len(s)) for s in splits)} in train, "
                         f"validation and test; each split needs at least one (see the data report)")
    print(f"{len(data.classes)} classes; {len(splits[0])} train" + (f" ({len(extra)} flagged)" if flagged else "")
          + f", {len(splits[1])} validation, {len(splits[2])} test samples ({data.split})")
    train_images, val_images, test_images = map(inputs.resized_images(args.image_size, args.cache), splits)
    signature = (inputs.image_signature(args.image_size), tf.TensorSpec((), tf.int64))

    def labelled(source):
        return lambda index, decoded, rng: (decoded[0], source.records[index].label)

    train_batches = inputs.batches(train_images, labelled(train_images), signature, batch, seed=args.seed,
                                   shard=fitting.shard_of(strategy), replicas=replicas)
    val_batches = inputs.batches(val_images, labelled(val_images), signature, batch, replicas=replicas)

    def predicted(model, source):
        """(true labels, probabilities) of `source` in inference mode, as the app runs the network."""
        indices, probabilities = inputs.predict(model, inputs.batches(source, labelled(source), signature, batch,
                                                                      with_index=True))
        return np.array([source.records[i].label for i in indices], dtype=np.int64), probabilities

    # 2. Model, 3. training: the new head on the frozen base, then the top of the base at a lower rate.
    schedule = fitting.Schedule(args.epochs, args.fine_tune_epochs, args.learning_rate, args.patience,
                                args.fine_tune_fraction)

    def fitted(backbone: str, backbone_run: fitting.Run):
        weights = weights_for(backbone, args.weights, comparing=len(backbones) > 1)
        keras.utils.set_random_seed(args.seed)  # every backbone of a comparison starts alike, whatever ran before
        with strategy.scope():
            model, base = build_classifier(len(data.classes), args.image_size, backbone, weights, name=task,
                                           dense_units=dense_units, imagenet_rows=imagenet_rows)
            fitting.fit_two_phases(backbone_run, "classifier", model, base, train_batches, val_batches,
                                   compile_classifier, schedule, is_pretrained(weights),
                                   steps_per_epoch=-(-len(splits[0]) // batch))
        return model

    comparison = None
    if run is None:
        runs = {backbone: fitting.Run(args.out, options.settings(args, backbone=backbone, weights=weights_for(
                    backbone, args.weights, comparing=True), **recorded), args.restart,
                    work=fitting.work_folder(args.out) / backbone) for backbone in backbones}
        rows = [compare(backbone, runs[backbone], fitted, predicted, (train_images, val_images, test_images),
                        data.classes) for backbone in backbones]
        comparison = chosen_backbone(rows)
        backbone, run = comparison["kept"], runs[comparison["kept"]]
        print(f"Kept {backbone}: the best validation accuracy ({comparison['kept_validation_accuracy']:.3f}); "
              f"its finished stages are reloaded")
    else:
        backbone = backbones[0]
    model = fitted(backbone, run)

    # 4. Evaluate on the held-out test split.
    truth, probabilities = predicted(model, test_images)
    metrics = evaluation.classification_metrics(truth, probabilities, data.classes, k=min(5, len(data.classes)))
    majority = np.bincount([s.label for s in splits[0]], minlength=len(data.classes)).argmax()
    metrics["baselines"] = {"majority_class_accuracy": float(np.mean(truth == majority))}
    print(f"test top-1 {metrics['top1_accuracy']:.3f} (most frequent class "
          f"{metrics['baselines']['majority_class_accuracy']:.3f}), macro precision "
          f"{metrics['precision_macro']:.3f}, macro recall {metrics['recall_macro']:.3f}")

    # 5. The bundle: network, metadata, card, confusion matrix, history, a few held-out examples.
    unreadable = {**scan.unreadable, **train_images.problems, **val_images.problems, **test_images.problems}
    report = {**data.report, "unreadable_images": [f"{readable_path(p, data.root)}: {r}"
                                                    for p, r in sorted(unreadable.items())]}
    if flagged:
        report["extra_data"] = flagged.summary()
    report = report_problems(report)
    dataset = {"name": data.name, "images": len(set(images + [s.path for s in extra])), "split": data.split,
               "split_sizes": {"train": len(splits[0]), "validation": len(splits[1]), "test": len(splits[2])},
               "sha256": scan.sha256, **data.details, "report": report}
    extra_metadata = {"label_ids": label_ids} if label_ids else {}
    weights = weights_for(backbone, args.weights, comparing=comparison is not None)
    if weights_provenance(backbone, weights):
        extra_metadata["pretrained"] = weights_provenance(backbone, weights)
    if comparison:
        extra_metadata["comparison"] = comparison
    metadata = publishing.base_metadata(task, data.classes, args.image_size, metrics, dataset, command,
                                        demo=args.demo, backbone=backbone, **extra_metadata)
    rows, body, files = evaluation.classification_report_parts(metrics, data.classes, card.label_name)
    if comparison:
        table = evaluation.comparison_markdown(comparison["rows"])
        files.update({"comparison.csv": evaluation.comparison_csv(comparison["rows"]).encode(),
                      "comparison.md": table.encode()})
        body = comparison_section(comparison, table) + body
    text = publishing.model_card(card.title, card.summary.format(classes=len(data.classes), backbone=backbone),
                                 metadata, tags=card.tags, datasets=card.datasets, metric_rows=rows, body=body,
                                 usage=publishing.usage_snippet("single-label", args.push_to_hub),
                                 baseline_rows=[("accuracy, most frequent class",
                                                 metrics["baselines"]["majority_class_accuracy"])])
    if args.with_examples:
        files.update(publishing.examples_per_class(splits[2]))
    publishing.release(run, args.out, {"classifier": with_detector(model, backbone, weights, detector)}, metadata, text,
                       files, args.push_to_hub, args.private)
    if comparison:
        fitting.remove_work_folder(args.out)  # the other backbones' work folders
    return metrics


# --- comparing backbones -----------------------------------------------------------------

def distinct(backbones) -> list[str]:
    """--backbone as a list (one name, or several to compare), each network once."""
    names = [backbones] if isinstance(backbones, str) else list(backbones)
    networks = [ALIASES.get(name, name) for name in names]
    if len(set(networks)) < len(networks):
        raise SystemExit(f"--backbone {' '.join(names)}: a network is named twice (old names are aliases: "
                         f"{', '.join(f'{old} = {new}' for old, new in ALIASES.items())})")
    return names


def weights_for(backbone: str, weights: str, comparing: bool) -> str:
    """A comparison sets from-scratch networks beside pretrained ones: those train from scratch
    whatever --weights says. Alone, a from-scratch backbone with weights is refused (build_backbone)."""
    return "none" if comparing and ALIASES.get(backbone, backbone) in SCRATCH else weights


def compare(backbone: str, run: fitting.Run, fitted, predicted, sources, classes: list[str]) -> dict:
    """One backbone's row of the comparison: trained (or resumed) in its own work folder, then
    scored on the three splits. The row is kept in that folder, so a resumed comparison does not
    train or score a finished backbone again."""
    row = run.recorded("comparison.json")
    if row is not None:
        print(f"{backbone}: compared in an earlier run")
        return row
    print(f"Comparing backbones: {backbone}")
    model = fitted(backbone, run)
    scores = [evaluation.classification_metrics(*predicted(model, source), classes, k=1) for source in sources]
    row = {"backbone": backbone, "parameters": int(model.count_params()), "fit_seconds": round(run.fit_seconds(), 1),
           "train_accuracy": scores[0]["top1_accuracy"], "validation_accuracy": scores[1]["top1_accuracy"],
           "test_accuracy": scores[2]["top1_accuracy"], "test_recall_macro": scores[2]["recall_macro"]}
    print("  " + ", ".join(f"{key} {value}" for key, value in row.items() if key != "backbone"))
    write_atomic(run.work / "comparison.json", (json.dumps(row, indent=1) + "\n").encode())
    return row


def chosen_backbone(rows: list[dict]) -> dict:
    """The comparison as task.json records it, and the backbone kept: the best validation accuracy
    (ties: the first listed). Never the test accuracy: choosing on the test split would make its
    figures part of the choice, and optimistic."""
    best = max(rows, key=lambda row: row["validation_accuracy"])  # max keeps the first of equals
    return {"rows": rows, "kept": best["backbone"], "chosen_by": "validation accuracy",
            "kept_validation_accuracy": best["validation_accuracy"]}


def comparison_section(comparison: dict, table: str) -> str:
    """The card's comparison: the table, and which backbone was kept and why."""
    return (f"\n## Backbone comparison\n\nEach backbone trained on the same split with the same seed and "
            f"schedule; time to fit is the epochs' wall time, both phases.\n\n{table}\n\n"
            f"Kept: **{comparison['kept']}**, the best validation accuracy "
            f"({comparison['kept_validation_accuracy']:.4f}; ties go to the first listed). The test figures are "
            f"shown, never used to choose: a choice made on the test split would leak it into the model, and its "
            f"figures would no longer be held out.\n")
