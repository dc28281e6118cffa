"""The losses Keras does not ship, and the class weights they take.

Registered as Keras serialisables, so a saved model that names them reloads; bundles are loaded
with compile=False, so the app never needs them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

MAX_CLASS_WEIGHT = 50.0


def class_weights(positives, total) -> list[float]:
    """sqrt(negatives / positives) per class, in [1, 50]: rare classes count more, not absurdly
    more, and a common one (a segmentation's background) counts 1. `positives` are each class's
    examples (labels or pixels), `total` all examples."""
    positives = np.asarray(positives, dtype=np.float64)
    weights = np.sqrt((total - positives) / np.maximum(positives, 1.0))
    return np.clip(weights, 1.0, MAX_CLASS_WEIGHT).round(6).tolist()


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


@keras.saving.register_keras_serializable(package="caries")
class SegmentationLoss(keras.losses.Loss):
    """Dice, IoU (Jaccard), pixel-wise cross-entropy, or a sum of an overlap loss and cross-entropy.

    Overlap losses are computed per foreground class over the whole batch (so an image without
    lesions does not give 0/0) and averaged; the background channel of a softmax is left out, as it
    would make them trivially good. Cross-entropy is binary per class (sigmoid) or categorical
    (softmax), each class weighted by `class_weights`.
    """

    def __init__(self, kind="dice+ce", activation="sigmoid", class_weights=None, smooth=1.0,
                 name="segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind, self.activation, self.smooth = kind.replace("bce", "ce"), activation, float(smooth)
        self.class_weights = list(class_weights) if class_weights else None

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        y_pred = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        total = 0.0
        first = 1 if self.activation == "softmax" else 0
        t, p = y_true[..., first:], y_pred[..., first:]
        intersection = ops.sum(t * p, axis=(0, 1, 2))
        sums = ops.sum(t, axis=(0, 1, 2)) + ops.sum(p, axis=(0, 1, 2))
        if "dice" in self.kind:
            total += 1.0 - ops.mean((2.0 * intersection + self.smooth) / (sums + self.smooth))
        if "iou" in self.kind:
            total += 1.0 - ops.mean((intersection + self.smooth) / (sums - intersection + self.smooth))
        if "ce" in self.kind:
            weights = ops.convert_to_tensor(self.class_weights or [1.0] * y_pred.shape[-1], y_pred.dtype)
            if self.activation == "softmax":
                pixel = -ops.sum(weights * y_true * ops.log(y_pred), axis=-1)
            else:  # the weight multiplies each class's positive pixels
                pixel = -ops.sum(weights * y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred), axis=-1)
            total += ops.mean(pixel)
        return total

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "activation": self.activation,
                "class_weights": self.class_weights, "smooth": self.smooth}
