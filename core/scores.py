"""The held-out figures a tab shows under its model, read from the bundle's task.json.

Each task's `headline(metadata)` gives rows of (name, value, baseline), baseline being (value,
what it is) or None; core.ui.status draws them as a small table. Figures an older bundle lacks
are left out rather than shown as zero.
"""

from __future__ import annotations


def metric(metadata: dict, path: str):
    """A held-out figure by dotted path under `metrics` ("baselines.majority_class_accuracy"), or None."""
    value = metadata.get("metrics", {})
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) else None


def classifier_headline(metadata: dict) -> list:
    """Single-label classifiers: accuracy next to always answering the most frequent class; top-5
    only where there are more than five classes (otherwise it is 1 whatever the model)."""
    rows = [("accuracy", metric(metadata, "top1_accuracy"),
             (metric(metadata, "baselines.majority_class_accuracy"), "most frequent class"))]
    if len(metadata.get("labels", [])) > 5:
        rows.append(("top-5 accuracy", metric(metadata, "top5_accuracy"), None))
    rows.append(("recall, mean over classes", metric(metadata, "recall_macro"), None))
    return [row for row in rows if row[1] is not None]


def multilabel_headline(metadata: dict) -> list:
    """Multi-label models: F1 at the tuned thresholds next to predicting the most frequent labels,
    mean average precision, and precision of the first label."""
    rows = [("F1 (micro), tuned thresholds", metric(metadata, "f1_micro"),
             (metric(metadata, "baselines.most_frequent_f1_micro"), "the most frequent labels, always")),
            ("mean average precision", metric(metadata, "mean_average_precision"), None),
            ("precision of the first label", metric(metadata, "precision_at_1"), None)]
    return [row for row in rows if row[1] is not None]
