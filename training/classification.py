"""The single-label classification recipe, shared by every single-label task.

A task's recipe (dog_breed.py, sandwich.py) reads its dataset as distributed into samples and
class names; `train` does the rest, in the keras-io order:

1. data: one pass over the files (content hash, unreadable files), then streaming batches;
2. model: backbone features (preprocessing inside), an optional dense layer, softmax;
3. training: the two-phase transfer-learning schedule, resumable, on every device there is;
4. evaluation on the held-out test split;
5. the bundle: network, task.json, card, confusion matrix, training history; optionally the Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import evaluation, fitting, inputs, options, publishing
from training.backbones import backbone_features, is_pretrained
from training.datasets.report import report_problems
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
                     dense_units: int = 0):
    """Backbone features, optional dense + dropout, softmax: (model, backbone)."""
    import keras
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.15),
                    layers.RandomContrast(0.2)]
    inputs_, x, base = backbone_features(image_size, backbone, weights, augmentation)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="class", dtype="float32")(x)
    return keras.Model(inputs_, outputs, name=name), base


def compile_classifier(model, learning_rate: float):
    import keras

    metrics = ["accuracy"]
    if model.output_shape[-1] > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=metrics)


def train(task: str, data: Data, card: publishing.Card, args, command: str, dense_units: int = 0, label_ids=None) -> dict:
    """Train, evaluate and save a classifier for `data` with the recipe's options `args`; returns
    the held-out metrics."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    run = fitting.Run(args.out, options.settings(args), args.restart)
    fitting.set_precision(args.mixed_precision)
    strategy = fitting.distribution()

    # 1. Data: every file read once (content hash, header check); images streamed from disk.
    images = [s.path for s in data.train + data.val + data.test]
    scan = inputs.scan(images + data.extra_files, data.root, images=images)
    splits = [[s for s in split if str(s.path) not in scan.unreadable] for split in (data.train, data.val, data.test)]
    if min(map(len, splits)) == 0:
        raise SystemExit(f"Not enough readable images: {', '.join(str(len(s)) for s in splits)} in train, "
                         f"validation and test; each split needs at least one (see the data report)")
    print(f"{len(data.classes)} classes; {len(splits[0])} train, {len(splits[1])} validation, "
          f"{len(splits[2])} test samples ({data.split})")
    train_images, val_images, test_images = map(inputs.resized_images(args.image_size, args.cache), splits)
    signature = (inputs.image_signature(args.image_size), tf.TensorSpec((), tf.int64))

    def labelled(source):
        return lambda index, decoded, rng: (decoded[0], source.records[index].label)

    replicas = strategy.num_replicas_in_sync
    batch = args.batch_size * replicas
    train_batches = inputs.batches(train_images, labelled(train_images), signature, batch, seed=args.seed,
                                   shard=fitting.shard_of(strategy), replicas=replicas)
    val_batches = inputs.batches(val_images, labelled(val_images), signature, batch, replicas=replicas)

    # 2. Model, 3. training: the new head on the frozen base, then the top of the base at a lower rate.
    schedule = fitting.Schedule(args.epochs, args.fine_tune_epochs, args.learning_rate, args.patience,
                                args.fine_tune_fraction)
    with strategy.scope():
        model, base = build_classifier(len(data.classes), args.image_size, args.backbone, args.weights, name=task,
                                       dense_units=dense_units)
        fitting.fit_two_phases(run, "classifier", model, base, train_batches, val_batches, compile_classifier,
                               schedule, is_pretrained(args.weights), steps_per_epoch=-(-len(splits[0]) // batch))

    # 4. Evaluate on the held-out test split.
    indices, probabilities = inputs.predict(model, inputs.batches(test_images, labelled(test_images), signature, batch,
                                                                  with_index=True))
    truth = np.array([test_images.records[i].label for i in indices], dtype=np.int64)
    metrics = evaluation.classification_metrics(truth, probabilities, data.classes, k=min(5, len(data.classes)))
    majority = np.bincount([s.label for s in splits[0]], minlength=len(data.classes)).argmax()
    metrics["baselines"] = {"majority_class_accuracy": float(np.mean(truth == majority))}
    print(f"test top-1 {metrics['top1_accuracy']:.3f} (most frequent class "
          f"{metrics['baselines']['majority_class_accuracy']:.3f}), macro precision "
          f"{metrics['precision_macro']:.3f}, macro recall {metrics['recall_macro']:.3f}")

    # 5. The bundle: network, metadata, card, confusion matrix, history, a few held-out examples.
    unreadable = {**scan.unreadable, **train_images.problems, **val_images.problems, **test_images.problems}
    report = report_problems({**data.report, "unreadable_images": [f"{p}: {r}" for p, r in sorted(unreadable.items())]})
    dataset = {"name": data.name, "images": len(set(images)), "split": data.split, "sha256": scan.sha256,
               **data.details, "report": report}
    extra = {"label_ids": label_ids} if label_ids else {}
    metadata = publishing.base_metadata(task, data.classes, args.image_size, metrics, dataset, command,
                                        demo=args.demo, backbone=args.backbone, **extra)
    rows, body, files = evaluation.classification_report_parts(metrics, data.classes, card.label_name)
    text = publishing.model_card(card.title, card.summary.format(classes=len(data.classes), backbone=args.backbone),
                                 metadata, tags=card.tags, datasets=card.datasets, metric_rows=rows, body=body,
                                 baseline_rows=[("accuracy, most frequent class",
                                                 metrics["baselines"]["majority_class_accuracy"])])
    if args.with_examples:
        files.update(publishing.examples_per_class(splits[2]))
    publishing.release(run, args.out, {"classifier": model}, metadata, text, files, args.push_to_hub, args.private)
    return metrics
