"""The multi-label core shared by the hashtag and movie-genre recipes.

Sigmoid outputs trained with binary cross-entropy (optionally class-weighted,
or focal for the long tail of rare labels) on multi-hot targets; decision
thresholds chosen on the validation split, one global and one per label;
metrics: micro/macro F1, precision@k and recall@k, mean average precision and
a per-label report, next to the all-negative and most-frequent-labels baselines.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from training import backbones, fitting

LOSSES = ("bce", "weighted", "focal")
K_VALUES = (1, 3, 5)


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
    outputs = layers.Dense(num_labels, activation="sigmoid", name="labels")(x)
    return keras.Model(inputs, outputs, name=name), base


def make_loss(kind: str, train_targets: np.ndarray):
    if kind == "focal":
        return keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0)
    if kind == "weighted":
        return WeightedBinaryCrossentropy(positive_weights(train_targets).tolist())
    return keras.losses.BinaryCrossentropy()


def positive_weights(targets: np.ndarray) -> np.ndarray:
    """sqrt(negatives / positives) per label, in [1, 50]: rare labels count more, not absurdly more."""
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    return np.clip(np.sqrt(negatives / np.maximum(positives, 1)), 1.0, 50.0).astype(np.float32)


@keras.saving.register_keras_serializable(package="multilabel")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy whose positive terms are weighted per label."""

    def __init__(self, positive_weights, name="weighted_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = list(positive_weights)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        terms = weights * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred)
        return -ops.mean(terms, axis=-1)

    def get_config(self):
        return {**super().get_config(), "positive_weights": self.positive_weights}


def compile_with(loss):
    def compile_model(model, learning_rate):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                      metrics=[keras.metrics.AUC(multi_label=True, name="auc")])

    return compile_model


# --- thresholds ------------------------------------------------------------------------

def f1_score(tp, fp, fn) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The threshold maximising F1 (micro, over every cell given) for "positive if score >= t".

    Every distinct score is a candidate cut; the returned threshold is halfway between
    the lowest score kept and the next lower score, so it does not sit on a validation
    score. Ties go to the higher threshold (fewer positives).
    """
    scores, targets = np.ravel(scores), np.ravel(targets).astype(bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_targets = scores[order], targets[order]
    distinct = np.flatnonzero(np.diff(sorted_scores, append=-np.inf) != 0)  # last index of each distinct score
    tp = np.cumsum(sorted_targets)[distinct]
    fp = (distinct + 1) - tp
    fn = targets.sum() - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    best = int(np.argmax(f1))  # first maximum = highest threshold
    if f1[best] == 0:
        return 0.5
    kept = sorted_scores[distinct[best]]
    below = sorted_scores[distinct[best + 1]] if best + 1 < len(distinct) else 0.0
    return float((kept + below) / 2)


def choose_thresholds(scores: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """A global threshold and one per label (the global one where a label has no positive)."""
    global_threshold = best_threshold(scores, targets)
    per_label = {}
    for j, label in enumerate(labels):
        per_label[label] = best_threshold(scores[:, j], targets[:, j]) if targets[:, j].any() else global_threshold
    return {"global": global_threshold, "per_label": per_label, "chosen_on": "validation split, maximising F1"}


# --- evaluation ------------------------------------------------------------------------

def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the precision at the rank of each positive (no interpolation)."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order].astype(bool)
    if not hits.any():
        return 0.0
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def evaluate(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray, labels: list[str]) -> dict:
    targets = targets.astype(bool)
    predicted = scores >= thresholds[None, :]
    tp = (predicted & targets).sum(axis=0)
    fp = (predicted & ~targets).sum(axis=0)
    fn = (~predicted & targets).sum(axis=0)
    support = targets.sum(axis=0)
    present = support > 0
    per_label_f1 = np.array([f1_score(a, b, c) for a, b, c in zip(tp, fp, fn)])
    ap = np.array([average_precision(scores[:, j], targets[:, j]) for j in range(len(labels))])
    metrics = {
        "f1_micro": f1_score(tp.sum(), fp.sum(), fn.sum()),
        "f1_macro": float(per_label_f1[present].mean()) if present.any() else 0.0,
        "precision_micro": float(tp.sum() / max(tp.sum() + fp.sum(), 1)),
        "recall_micro": float(tp.sum() / max(tp.sum() + fn.sum(), 1)),
        "mean_average_precision": float(ap[present].mean()) if present.any() else 0.0,
    }
    ranked = np.argsort(-scores, axis=1, kind="stable")
    has_labels = targets.any(axis=1)
    for k in K_VALUES:
        top = np.take_along_axis(targets, ranked[:, :k], axis=1).sum(axis=1)
        metrics[f"precision_at_{k}"] = float(np.mean(top / min(k, len(labels))))
        metrics[f"recall_at_{k}"] = float(np.mean(top[has_labels] / targets[has_labels].sum(axis=1))) if has_labels.any() else 0.0
    metrics["test_images"] = int(len(targets))
    metrics["per_label"] = {
        label: {"precision": float(tp[j] / max(tp[j] + fp[j], 1)), "recall": float(tp[j] / max(support[j], 1)),
                "f1": float(per_label_f1[j]), "average_precision": float(ap[j]), "support": int(support[j]),
                "threshold": float(thresholds[j])}
        for j, label in enumerate(labels)
    }
    return metrics


def baselines(train_targets: np.ndarray, test_targets: np.ndarray) -> dict:
    """Micro-F1 of predicting nothing, and of predicting the most frequent training labels
    (as many as an average training image has) for every image."""
    test = test_targets.astype(bool)
    k = max(1, int(round(train_targets.sum(axis=1).mean())))
    frequent = np.argsort(-train_targets.sum(axis=0), kind="stable")[:k]
    predicted = np.zeros_like(test)
    predicted[:, frequent] = True
    tp = (predicted & test).sum()
    return {"all_negative_f1_micro": 0.0,
            "most_frequent_f1_micro": f1_score(tp, (predicted & ~test).sum(), (~predicted & test).sum()),
            "most_frequent_k": k}


def metric_rows(metrics: dict) -> list[tuple[str, float]]:
    rows = [("F1 (micro)", metrics["f1_micro"]), ("F1 (macro)", metrics["f1_macro"]),
            ("precision (micro)", metrics["precision_micro"]), ("recall (micro)", metrics["recall_micro"]),
            ("mAP", metrics["mean_average_precision"])]
    rows += [(f"precision@{k}", metrics[f"precision_at_{k}"]) for k in K_VALUES]
    rows += [(f"recall@{k}", metrics[f"recall_at_{k}"]) for k in K_VALUES]
    rows += [("baseline F1, most frequent labels", metrics["baselines"]["most_frequent_f1_micro"]),
             ("baseline F1, all negative", metrics["baselines"]["all_negative_f1_micro"])]
    return rows


def per_label_table(metrics: dict, label_name: str = "label") -> str:
    lines = [f"| {label_name} | precision | recall | F1 | AP | support | threshold |", "|---|---|---|---|---|---|---|"]
    for label, m in metrics["per_label"].items():
        lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                     f"{m['average_precision']:.3f} | {m['support']} | {m['threshold']:.3f} |")
    return "\n".join(lines)


def random_split(images, targets, seed):
    """Random 80/10/10 (multi-label data has no simple stratification)."""
    order = np.random.default_rng(seed).permutation(len(images))
    n_test, n_val = max(1, len(order) // 10), max(1, len(order) // 10)
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return {"train": (images[train], targets[train]), "val": (images[val], targets[val]),
            "test": (images[test], targets[test]), "test_index": test}


def examples_from(used_paths, test_index, count=3):
    """A few held-out images for the app's examples: {bundle path: bytes}."""
    return {f"examples/{Path(used_paths[i]).parent.name}_{Path(used_paths[i]).name}": Path(used_paths[i]).read_bytes()
            for i in test_index[:count]}


def train_and_evaluate(args, model, base, loss, data, labels: list[str]):
    """Fit in two phases, choose thresholds on validation, evaluate on test.

    `data` is {"train"|"val"|"test": (images, targets)}. Returns (thresholds, metrics).
    """
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    fitting.fit_two_phases(model, base, args, (x_train, y_train), (x_val, y_val), compile_with(loss))
    val_scores = model.predict(x_val, batch_size=args.batch_size, verbose=0)
    thresholds = choose_thresholds(val_scores, y_val, labels)
    test_scores = model.predict(x_test, batch_size=args.batch_size, verbose=0)
    per_label = np.array([thresholds["per_label"][label] for label in labels])
    metrics = evaluate(test_scores, y_test, per_label, labels)
    metrics["baselines"] = baselines(y_train, y_test)
    print(f"test micro-F1 {metrics['f1_micro']:.3f} (most-frequent-labels baseline "
          f"{metrics['baselines']['most_frequent_f1_micro']:.3f}, all-negative 0), macro-F1 {metrics['f1_macro']:.3f}, "
          f"mAP {metrics['mean_average_precision']:.3f}, global threshold {thresholds['global']:.3f}")
    return thresholds, metrics
