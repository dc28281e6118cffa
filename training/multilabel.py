"""The multi-label recipe, shared by every multi-label task (hashtags, movie genres).

A task's recipe reads its dataset as distributed into samples (each with the indices of its
labels) and label names; `train` does the rest, in the keras-io order:

1. data: one pass over the files (content hash, unreadable files), a random 80/10/10 split
   (multi-label data has no simple stratification), streaming batches of multi-hot targets;
   corrections flagged in the app (--flags) join the training split only;
2. model: backbone features (preprocessing inside), dropout, one sigmoid per label; binary
   cross-entropy, optionally class-weighted, or focal for the long tail of rare labels;
3. training: the two-phase schedule, resumable; then decision thresholds chosen on the
   validation split, one global and one per label;
4. evaluation: micro/macro F1, precision@k and recall@k, mean average precision and a per-label
   report, next to the all-negative and most-frequent-labels baselines;
5. the bundle, and optionally the Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import f1_score

from training import backbones, evaluation, fitting, inputs, losses, publishing, recipe
from training.datasets.flagged import read_flagged
from training.datasets.report import readable_path, report_problems
from training.inputs import Sample

LOSSES = ("bce", "weighted", "focal")


def add_arguments(parser):
    parser.add_argument("--loss", choices=LOSSES, default="bce",
                        help="bce, class-weighted bce (rare labels weigh more), or focal")
    parser.add_argument("--max-labels", type=int, default=10, help="most labels the app shows at once")


def multi_hot(label_lists, num_labels: int) -> np.ndarray:
    targets = np.zeros((len(label_lists), num_labels), dtype=np.float32)
    for row, indices in enumerate(label_lists):
        targets[row, list(indices)] = 1.0
    return targets


# --- model and loss --------------------------------------------------------------------

def build_model(num_labels: int, image_size: int, backbone: str, weights: str, name: str):
    """Backbone features (preprocessing inside), dropout, one sigmoid per label."""
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.05), layers.RandomZoom(0.1)]
    inputs, x, base = backbones.backbone_features(image_size, backbone, weights, augmentation)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_labels, activation="sigmoid", name="labels", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name), base


def make_loss(kind: str, train_targets: np.ndarray):
    if kind == "focal":
        return keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0)
    if kind == "weighted":
        return losses.WeightedBinaryCrossentropy(losses.class_weights(train_targets.sum(axis=0), len(train_targets)))
    return keras.losses.BinaryCrossentropy()


def compile_with(loss):
    def compile_model(model, learning_rate):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                      metrics=[keras.metrics.AUC(multi_label=True, name="auc")])

    return compile_model


# --- thresholds ------------------------------------------------------------------------

def choose_thresholds(scores: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """A global threshold and one per label (the global one where a label has no positive)."""
    global_threshold = evaluation.best_threshold(scores, targets)
    per_label = {}
    for j, label in enumerate(labels):
        per_label[label] = evaluation.best_threshold(scores[:, j], targets[:, j]) if targets[:, j].any() else global_threshold
    return {"global": global_threshold, "per_label": per_label, "chosen_on": "validation split, maximising F1"}


# --- evaluation ------------------------------------------------------------------------

def baselines(train_targets: np.ndarray, test_targets: np.ndarray) -> dict:
    """Micro-F1 of predicting nothing, and of predicting the most frequent training labels
    (as many as an average training image has) for every image."""
    test = test_targets.astype(bool)
    k = max(1, int(round(train_targets.sum(axis=1).mean())))
    frequent = np.argsort(-train_targets.sum(axis=0), kind="stable")[:k]
    predicted = np.zeros_like(test)
    predicted[:, frequent] = True
    return {"all_negative_f1_micro": 0.0,
            "most_frequent_f1_micro": float(f1_score(test, predicted, average="micro", zero_division=0)),
            "most_frequent_k": k}


def metric_rows(metrics: dict) -> tuple[list, list]:
    """The card's rows: the model's results, and the baselines beside them."""
    rows = [("F1 (micro)", metrics["f1_micro"]), ("F1 (macro)", metrics["f1_macro"]),
            ("precision (micro)", metrics["precision_micro"]), ("recall (micro)", metrics["recall_micro"]),
            ("mAP", metrics["mean_average_precision"])]
    rows += [(f"precision@{k}", metrics[f"precision_at_{k}"]) for k in evaluation.K_VALUES]
    rows += [(f"recall@{k}", metrics[f"recall_at_{k}"]) for k in evaluation.K_VALUES]
    baseline_rows = [("baseline F1, most frequent labels", metrics["baselines"]["most_frequent_f1_micro"]),
                     ("baseline F1, all negative", metrics["baselines"]["all_negative_f1_micro"])]
    return rows, baseline_rows


def per_label_table(metrics: dict, label_name: str = "label") -> str:
    lines = [f"| {label_name} | precision | recall | F1 | AP | support | threshold |", "|---|---|---|---|---|---|---|"]
    for label, m in metrics["per_label"].items():
        lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                     f"{m['average_precision']:.3f} | {m['support']} | {m['threshold']:.3f} |")
    return "\n".join(lines)


def random_split(count: int, seed: int):
    """Index arrays of a random 80/10/10 split (multi-label data has no simple stratification)."""
    order = np.random.default_rng(seed).permutation(count)
    n_test, n_val = max(1, count // 10), max(1, count // 10)
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


# --- the recipe ------------------------------------------------------------------------

@dataclass
class Data:
    """A multi-label dataset read by its reader: label names and samples whose `label` is the
    tuple of their label indices."""

    name: str
    root: Path
    labels: list[str]
    samples: list[Sample]
    report: dict = field(default_factory=dict)  # what the reader left out, by kind
    lines: dict = field(default_factory=dict)  # image path -> line of the label file, for the report
    extra_files: list[Path] = field(default_factory=list)  # label files, part of the content hash
    details: dict = field(default_factory=dict)  # more for task.json's "dataset" entry


def train(task: str, data: Data, card: publishing.Card, args, command: str) -> dict:
    """Train, choose thresholds, evaluate and save a multi-label model for `data` with the recipe's
    options `args` (those of `options.common_parser` and `add_arguments`); returns the metrics."""
    import tensorflow as tf

    flagged = read_flagged(args.extra_data, task, "multi", data.labels) if args.extra_data else None
    setup = recipe.start(args, {"extra_data_sha256": flagged.sha256} if flagged else None)
    run, strategy, replicas, batch = setup.run, setup.strategy, setup.replicas, setup.batch

    # 1. Data: every file read once (content hash, header check), split, streamed from disk. Flagged
    # corrections join the training split after the split, so validation and test stay as without them.
    paths = [s.path for s in data.samples]
    extra_paths = [flag.path for flag in flagged.flags] if flagged else []
    scan = inputs.scan(paths + extra_paths + data.extra_files + (flagged.files if flagged else []), data.root,
                       images=paths + extra_paths, extra_root=flagged.folder if flagged else None)
    samples = [s for s in data.samples if str(s.path) not in scan.unreadable]
    report = data.report
    report["unreadable_images"] = [f"line {data.lines[p]}: {readable_path(p, data.root)}: {r}" if p in data.lines
                                   else f"{readable_path(p, data.root)}: {r}"
                                   for p, r in sorted(scan.unreadable.items(), key=lambda i: data.lines.get(i[0], 0))]
    report["kept"] = len(samples)
    print(f"{len(data.labels)} labels; {len(samples)} images used, {len(scan.unreadable)} unreadable")
    if len(samples) < 3:
        raise SystemExit(f"{len(samples)} usable images; at least 3 are needed (train, validation, test)")
    splits = [[samples[i] for i in part] for part in random_split(len(samples), args.seed)]
    if flagged:
        flagged.leave_out_held_out(scan.digests, [s.path for s in splits[1] + splits[2]])
        splits[0] += [Sample(flag.path, flag.correction) for flag in flagged.flags]
        report["extra_data"] = flagged.summary()
        print(flagged.describe())
    print(f"{len(splits[0])} train" + (f" ({len(flagged.flags)} flagged)" if flagged else "")
          + f", {len(splits[1])} validation, {len(splits[2])} test images")
    sources = [inputs.resized_images(args.image_size, args.cache)(split) for split in splits]
    targets = [multi_hot([s.label for s in split], len(data.labels)) for split in splits]
    signature = (inputs.image_signature(args.image_size), tf.TensorSpec((len(data.labels),), tf.float32))

    def example(part):
        return lambda index, decoded, rng: (decoded[0], targets[part][index])

    train_batches = inputs.batches(sources[0], example(0), signature, batch, seed=args.seed,
                                   shard=fitting.shard_of(strategy), replicas=replicas)
    val_batches = inputs.batches(sources[1], example(1), signature, batch, replicas=replicas)

    # 2. Model, 3. training, then thresholds on the validation split.
    schedule = fitting.Schedule(args.epochs, args.fine_tune_epochs, args.learning_rate, args.patience,
                                args.fine_tune_fraction)
    with strategy.scope():
        model, base = build_model(len(data.labels), args.image_size, args.backbone, args.weights, name=task)
        loss = make_loss(args.loss, targets[0])
        fitting.fit_two_phases(run, "classifier", model, base, train_batches, val_batches, compile_with(loss),
                               schedule, backbones.is_pretrained(args.weights),
                               steps_per_epoch=-(-len(splits[0]) // batch))

    def scores(part):
        indices, output = inputs.predict(model, inputs.batches(sources[part], example(part), signature, batch,
                                                               with_index=True))
        return output, targets[part][indices]

    thresholds = choose_thresholds(*scores(1), data.labels)

    # 4. Evaluate on the held-out test split.
    test_scores, test_targets = scores(2)
    per_label = np.array([thresholds["per_label"][label] for label in data.labels])
    metrics = evaluation.multilabel_metrics(test_scores, test_targets, per_label, data.labels)
    metrics["baselines"] = baselines(targets[0], test_targets)
    print(f"test micro-F1 {metrics['f1_micro']:.3f} (most-frequent-labels baseline "
          f"{metrics['baselines']['most_frequent_f1_micro']:.3f}, all-negative 0), macro-F1 {metrics['f1_macro']:.3f}, "
          f"mAP {metrics['mean_average_precision']:.3f}, global threshold {thresholds['global']:.3f}")

    # 5. The bundle.
    streamed = {p: r for source in sources for p, r in source.problems.items()}
    report["unreadable_images"] += [f"{readable_path(p, data.root)}: {r} (found while training)"
                                    for p, r in sorted(streamed.items())]
    report_problems(report)
    dataset = {"name": data.name, "images": len(samples) + (len(flagged.flags) if flagged else 0),
               "split": f"random 80/10/10, seed {args.seed}",
               "split_sizes": {"train": len(splits[0]), "validation": len(splits[1]), "test": len(splits[2])},
               "sha256": scan.sha256, **data.details, "report": report}
    metadata = publishing.base_metadata(task, data.labels, args.image_size, metrics, dataset, command,
                                        demo=args.demo, backbone=args.backbone, loss=args.loss,
                                        max_labels=args.max_labels)
    metadata["thresholds"] = thresholds
    body = (card.report_section(report) if card.report_section else "") + \
        f"\n## Per-{card.label_name} report\n\n" + per_label_table(metrics, card.label_name) + "\n"
    rows, baseline_rows = metric_rows(metrics)
    text = publishing.model_card(
        card.title, card.summary.format(labels=len(data.labels), backbone=args.backbone, loss=args.loss),
        metadata, tags=card.tags, datasets=card.datasets, metric_rows=rows, baseline_rows=baseline_rows, body=body,
        usage=publishing.usage_snippet("multi-label", args.push_to_hub))
    examples = examples_from([s.path for s in splits[2]]) if args.with_examples else {}
    publishing.release(run, args.out, {"classifier": model}, metadata, text, examples, args.push_to_hub, args.private)
    return metrics


def examples_from(test_paths, count=3):
    """A few held-out images for the app's examples: {bundle path: bytes}."""
    return {f"examples/{Path(path).parent.name}_{Path(path).name}": Path(path).read_bytes()
            for path in test_paths[:count]}
