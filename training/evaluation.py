"""Held-out metrics of a single-label classifier, and the card's report of them."""

from __future__ import annotations

import io

import numpy as np


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
