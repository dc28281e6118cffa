"""The single-label classifier: backbone features, an optional dense layer, softmax."""

from __future__ import annotations

from training.backbones import backbone_features


def build_classifier(num_classes: int, image_size: int, backbone: str, weights: str, name: str,
                     dense_units: int = 0):
    """Single-label classifier: backbone features, optional dense + dropout, softmax."""
    import keras
    from keras import layers

    augmentation = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.15),
                    layers.RandomContrast(0.2)]
    inputs, x, base = backbone_features(image_size, backbone, weights, augmentation)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="class")(x)
    return keras.Model(inputs, outputs, name=name), base


def compile_classifier(model, learning_rate: float):
    import keras

    metrics = ["accuracy"]
    if model.output_shape[-1] > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=metrics)
