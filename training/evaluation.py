"""Held-out metrics, computed by scikit-learn so that they are the figures users compare, and
the card's report of them.

Single-label classifiers: accuracy, top-k accuracy, macro and micro precision, recall and F1
(macro averages over every class, a class never predicted counting 0, as scikit-learn does), a
per-class report and the confusion matrix. Multi-label models: micro and macro F1, precision and
recall at the tuned thresholds, average precision per label and its mean, and precision@k and
recall@k (the one pair scikit-learn has no function for, computed here). Age & gender: the
rotation network's and the eye line's tilt errors, gender accuracy, age error, each beside its
baseline. Segmentation: Dice and IoU per class over the held-out pixels, and the tuned threshold.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from sklearn import metrics as skm

from core import faces
from core.segmentation import lesion_masks
from training.datasets.face_records import GENDERS

K_VALUES = (1, 3, 5)


# --- single-label ------------------------------------------------------------------------------

def classification_metrics(y_true, probabilities, labels: list[str], k: int = 5) -> dict:
    """Top-1/top-k accuracy, macro and micro precision/recall/F1, a per-class report and the confusion matrix."""
    y_true = np.asarray(y_true)
    ids = np.arange(len(labels))
    y_pred = np.asarray(probabilities).argmax(axis=1)
    report = skm.classification_report(y_true, y_pred, labels=ids, target_names=labels, output_dict=True,
                                       zero_division=0)
    micro = skm.precision_recall_fscore_support(y_true, y_pred, labels=ids, average="micro", zero_division=0)
    k = min(k, len(labels))
    top_k = skm.top_k_accuracy_score(y_true, probabilities, k=k, labels=ids) if len(labels) > 2 \
        else skm.accuracy_score(y_true, y_pred) if k == 1 else 1.0
    return {
        "top1_accuracy": float(skm.accuracy_score(y_true, y_pred)),
        f"top{k}_accuracy": float(top_k),
        "precision_macro": float(report["macro avg"]["precision"]),
        "recall_macro": float(report["macro avg"]["recall"]),
        "f1_macro": float(report["macro avg"]["f1-score"]),
        # In single-label classification micro precision and micro recall both equal accuracy.
        "precision_micro": float(micro[0]),
        "recall_micro": float(micro[1]),
        "test_images": int(len(y_true)),
        "per_class": {label: {"precision": float(report[label]["precision"]), "recall": float(report[label]["recall"]),
                              "f1": float(report[label]["f1-score"]), "support": int(report[label]["support"])}
                      for label in labels},
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def classification_report_parts(metrics: dict, labels: list[str], label_name: str = "class"):
    """The card's result rows, its per-class and confusion-matrix sections, and the matrix image.
    Top-k accuracy is left out where k covers every class (it would be 1 whatever the model)."""
    rows = [("top-1 accuracy", metrics["top1_accuracy"])]
    if len(labels) > 5:
        rows.append(("top-5 accuracy", metrics["top5_accuracy"]))
    rows += [("precision (macro)", metrics["precision_macro"]), ("recall (macro)", metrics["recall_macro"]),
             ("F1 (macro)", metrics["f1_macro"])]
    per_class = "\n".join(
        f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for label, m in metrics["per_class"].items()
    )
    body = (f"\n## Per-class report\n\n| {label_name} | precision | recall | f1 | support |\n|---|---|---|---|---|\n"
            f"{per_class}\n\n## Confusion matrix\n\n![confusion matrix](confusion_matrix.png)\n")
    extra = {"confusion_matrix.png": confusion_matrix_png(metrics["confusion_matrix"], labels)}
    return rows, body, extra


def confusion_matrix_png(confusion, labels: list[str]) -> bytes:
    """The row-normalised confusion matrix drawn by scikit-learn's ConfusionMatrixDisplay; class
    names and values where there are few enough classes to read them."""
    import matplotlib

    matplotlib.use("Agg")  # no display: draw into a file
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion, dtype=float)
    n = len(labels)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = min(16.0, max(4.0, 0.35 * n + 2))
    figure, axes = plt.subplots(figsize=(side, side), dpi=80)
    display = skm.ConfusionMatrixDisplay(rows, display_labels=labels if n <= 40 else None)
    display.plot(ax=axes, cmap="Blues", include_values=n <= 12, values_format=".2f", colorbar=False,
                 xticks_rotation="vertical")
    if n > 40:
        axes.set_xticks([])
        axes.set_yticks([])
    axes.set_title("rows: true class, normalised; columns: predicted")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


# The backbone comparison's table, in the course's columns (plus the parameters): key, heading, format.
COMPARISON_COLUMNS = (("backbone", "backbone", "{}"), ("parameters", "parameters", "{:,}"),
                      ("fit_seconds", "time to fit (s)", "{:.1f}"), ("train_accuracy", "train accuracy", "{:.4f}"),
                      ("validation_accuracy", "validation accuracy", "{:.4f}"),
                      ("test_accuracy", "test accuracy", "{:.4f}"), ("test_recall_macro", "test recall (macro)", "{:.4f}"))


def comparison_csv(rows: list[dict]) -> str:
    """The comparison as CSV: one row per backbone, the rows' own keys as the header, raw numbers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([key for key, _, _ in COMPARISON_COLUMNS])
    writer.writerows([row[key] for key, _, _ in COMPARISON_COLUMNS] for row in rows)
    return buffer.getvalue()


def comparison_markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table, for the card and comparison.md."""
    lines = ["| " + " | ".join(heading for _, heading, _ in COMPARISON_COLUMNS) + " |",
             "|" + "---|" * len(COMPARISON_COLUMNS)]
    lines += ["| " + " | ".join(form.format(row[key]) for key, _, form in COMPARISON_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


# --- multi-label -------------------------------------------------------------------------------

def best_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The threshold maximising F1 (micro, over every cell given) for "positive if score >= t",
    from scikit-learn's precision_recall_curve.

    The returned threshold is halfway between the lowest score kept and the next lower score, so it
    does not sit on a validation score. Ties go to the higher threshold (fewer positives)."""
    scores, targets = np.ravel(scores), np.ravel(targets).astype(bool)
    if not targets.any():
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(targets, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    if f1.max() == 0:
        return 0.5
    best = int(np.flatnonzero(f1 == f1.max())[-1])  # thresholds increase: the last maximum is the highest
    below = np.max(scores[scores < thresholds[best]], initial=0.0)
    return float((thresholds[best] + below) / 2)


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray, labels: list[str]) -> dict:
    """Micro and macro F1, precision and recall at the given per-label thresholds; average
    precision per label and its mean over the labels with a positive (mAP); precision@k, recall@k;
    a per-label report."""
    targets = targets.astype(bool)
    predicted = scores >= thresholds[None, :]
    ids = np.arange(len(labels))
    per_label = skm.precision_recall_fscore_support(targets, predicted, zero_division=0)
    present = targets.any(axis=0)
    ap = np.zeros(len(labels))
    if present.any():
        ap[present] = skm.average_precision_score(targets[:, present], scores[:, present], average=None)
    metrics = {
        "f1_micro": float(skm.f1_score(targets, predicted, average="micro", zero_division=0)),
        "f1_macro": float(skm.f1_score(targets, predicted, average="macro", zero_division=0)),
        "precision_micro": float(skm.precision_score(targets, predicted, average="micro", zero_division=0)),
        "recall_micro": float(skm.recall_score(targets, predicted, average="micro", zero_division=0)),
        "mean_average_precision": float(ap[present].mean()) if present.any() else 0.0,
    }
    ranked = np.argsort(-scores, axis=1, kind="stable")
    has_labels = targets.any(axis=1)
    for k in K_VALUES:
        top = np.take_along_axis(targets, ranked[:, :k], axis=1).sum(axis=1)
        metrics[f"precision_at_{k}"] = float(np.mean(top / min(k, len(labels))))
        metrics[f"recall_at_{k}"] = float(np.mean(top[has_labels] / targets[has_labels].sum(axis=1))) \
            if has_labels.any() else 0.0
    metrics["test_images"] = int(len(targets))
    metrics["per_label"] = {
        label: {"precision": float(per_label[0][j]), "recall": float(per_label[1][j]), "f1": float(per_label[2][j]),
                "average_precision": float(ap[j]), "support": int(per_label[3][j]), "threshold": float(thresholds[j])}
        for j, label in zip(ids, labels)
    }
    return metrics


# --- age & gender ------------------------------------------------------------------------------

def best_constant_angle_error(angles) -> float:
    """Mean angular error of the best single guess (searched every degree): the baseline."""
    candidates = np.arange(-180, 180, 1.0)
    return float(min(np.mean(faces.angle_error(c, angles)) for c in candidates))


def tilt_report(network_angles, eye_angles, true_angles) -> dict:
    """Both tilt estimates' held-out errors, and which one the app uses by default: the eyes where
    they are found, when on those faces they beat the network."""
    network_errors = faces.angle_error(network_angles, true_angles)
    found = ~np.isnan(eye_angles)
    eye_errors = faces.angle_error(eye_angles[found], true_angles[found])
    report = {"network_mae": float(np.mean(network_errors)),
              "eyes_found": float(found.mean()) if len(found) else 0.0,
              "eyes_mae": float(np.mean(eye_errors)) if found.any() else None,
              "network_mae_where_eyes_found": float(np.mean(network_errors[found])) if found.any() else None}
    eyes_better = found.any() and report["eyes_mae"] < report["network_mae_where_eyes_found"]
    report["default"] = "eyes" if eyes_better else "network"
    return report


def age_gender_metrics(predicted_angles, true_angles, eye_angles, outputs, y_gender, y_age, train_gender, train_age) -> dict:
    """Held-out metrics: the rotation network and the eye line on turned faces, gender and age on
    upright ones, each next to its baseline."""
    errors = faces.angle_error(predicted_angles, true_angles)
    gender_pred = outputs["gender"].argmax(axis=1)
    age_pred = outputs["age"].reshape(-1)
    majority = np.bincount(train_gender, minlength=len(GENDERS)).argmax()
    mean_age = float(np.mean(train_age))
    per_class = classification_metrics(y_gender, outputs["gender"], list(GENDERS), k=1)["per_class"]
    return {
        "rotation_mae_degrees": float(np.mean(errors)),
        "rotation_within_10_degrees": float(np.mean(errors <= 10)),
        "tilt": tilt_report(predicted_angles, eye_angles, true_angles),
        "gender_accuracy": float(np.mean(gender_pred == y_gender)),
        "age_mae": float(np.mean(np.abs(age_pred - y_age))),
        "age_rmse": float(np.sqrt(np.mean((age_pred - y_age) ** 2))),
        "baselines": {
            "rotation_mae_best_constant": best_constant_angle_error(true_angles),
            "gender_accuracy_majority": float(np.mean(y_gender == majority)),
            "age_mae_train_mean": float(np.mean(np.abs(mean_age - y_age))),
            "age_rmse_train_mean": float(np.sqrt(np.mean((mean_age - y_age) ** 2))),
        },
        "gender_per_class": per_class,
        "test_faces": int(len(y_age)),
    }


# --- segmentation (caries) --------------------------------------------------------------------

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


THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def tune_threshold(items, activation: str, num_classes: int) -> float:
    """The threshold with the best mean Dice on the validation images (`held_out`), scored as the
    test images are and as the app applies it: on the probabilities restored to each image's own size.

    (Scoring on the letterboxed network output instead picks a different threshold: restoring
    resizes the probabilities bilinearly, which blurs a small lesion's edge over several pixels,
    so a threshold that costs nothing at the network's size dilates the mask at the image's.)
    Ties go to the threshold nearest 0.5."""
    counts = np.zeros((len(THRESHOLDS), num_classes, 3), np.int64)
    for _, _, truth, p in items:
        for index, threshold in enumerate(THRESHOLDS):
            counts[index] += overlap_counts(truth, lesion_masks(p, activation, float(threshold)))
    best, best_dice = 0.5, -1.0
    for index in np.argsort(np.abs(THRESHOLDS - 0.5), kind="stable"):
        dice, _ = scores_from_counts(counts[index])
        if dice.mean() > best_dice + 1e-9:
            best, best_dice = float(THRESHOLDS[index]), float(dice.mean())
    return best


def segmentation_metrics(items, activation: str, threshold: float, labels: list[str], shown: int = 3):
    """Dice and IoU per class and their mean over the held-out images (`held_out`) at their own size,
    with the two trivial baselines: an empty mask, and every pixel marked as each class. Also
    returns the `shown` images with the most lesion, for the card's overlays and the app's examples."""
    counts = np.zeros((len(labels), 3), np.int64)
    pixels, correct, images, most = 0, 0, 0, []
    for pair, picture, truth, p in items:
        predicted = lesion_masks(p, activation, threshold)
        counts += overlap_counts(truth, predicted)
        pixels += truth.shape[0] * truth.shape[1]
        correct += int((truth == predicted).all(axis=-1).sum())
        most = sorted([*most, (-int(truth.sum()), images, pair, picture, truth, predicted)], key=lambda m: m[:2])[:shown]
        images += 1
    dice, iou = scores_from_counts(counts)
    share = counts[:, 2] / max(pixels, 1)
    all_dice = 2 * share / (1 + share)
    metrics = {
        "dice_mean": float(dice.mean()), "iou_mean": float(iou.mean()), "pixel_accuracy": float(correct / max(pixels, 1)),
        "test_images": images, "threshold": threshold,
        "per_class": {label: {"dice": float(d), "iou": float(j), "pixels_true": int(c[2]), "pixels_predicted": int(c[1]),
                              "share_of_pixels": float(s)}
                      for label, d, j, c, s in zip(labels, dice, iou, counts, share)},
        "baselines": {"empty_mask_dice": 0.0, "all_lesion_dice": float(all_dice.mean()),
                      "all_lesion_iou": float(share.mean())},
    }
    return metrics, [m[2:] for m in most]
