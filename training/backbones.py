"""Backbones: the from-scratch CNNs and the keras.applications networks, and how a recipe puts
one under its head.

Each backbone takes float RGB in 0..255; what it needs beyond that is a layer inside
the model (EfficientNet normalises internally; MobileNetV2 and Xception want -1..1).
"""

from __future__ import annotations

from pathlib import Path


def _small_cnn(input_shape, weights):
    """The course's CNN from scratch: four conv blocks; for quick runs and tests."""
    import keras
    from keras import layers

    if weights not in ("none", None):
        raise SystemExit("The 'small' backbone is trained from scratch: use --weights none.")
    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (16, 32, 64, 128):
        blocks += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),  # few steps per epoch on small data
            layers.Activation("relu"),
            layers.MaxPooling2D(),
        ]
    blocks.append(layers.GlobalAveragePooling2D())
    return keras.Sequential(blocks, name="small_cnn")


def _scratch_cnn(input_shape, weights):
    """The movie-poster course's CNN from scratch: four 5x5 conv blocks, then dense 128 and 64."""
    import keras
    from keras import layers

    if weights not in ("none", None):
        raise SystemExit("The 'scratch' backbone is trained from scratch: use --weights none.")
    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (16, 32, 64, 64):
        blocks += [layers.Conv2D(filters, 5, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.25)]
    blocks += [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
               layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return keras.Sequential(blocks, name="scratch_cnn")


def _simple_cnn(input_shape, weights):
    """The Open Images course's small CNN: three conv blocks, one dense layer, strong dropout."""
    import keras
    from keras import layers

    if weights not in ("none", None):
        raise SystemExit("The 'simple' backbone is trained from scratch: use --weights none.")
    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (32, 32, 64):
        blocks += [layers.Conv2D(filters, 3, activation="relu"), layers.MaxPooling2D()]
    blocks += [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return keras.Sequential(blocks, name="simple_cnn")


def _application(name, scale_to_unit_range):
    def build(input_shape, weights):
        import keras
        from keras import layers

        constructor = getattr(keras.applications, name)
        base = constructor(include_top=False, weights=weights_argument(weights, name), input_shape=input_shape, pooling="avg")
        if not scale_to_unit_range:
            return base
        inputs = keras.Input(input_shape)
        outputs = base(layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs))
        return keras.Model(inputs, outputs, name=base.name)

    return build


BACKBONES = {
    "efficientnetb0": _application("EfficientNetB0", False),
    "efficientnetb3": _application("EfficientNetB3", False),
    "mobilenetv2": _application("MobileNetV2", True),
    "xception": _application("Xception", True),
    "small": _small_cnn,
    "scratch": _scratch_cnn,
    "simple": _simple_cnn,
}


def weights_argument(weights, name):
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not Path(weights).is_file():
        raise SystemExit(f"--weights {weights}: no such file (expected {name} no-top weights, .h5)")
    return str(weights)


def build_backbone(name: str, weights: str, input_shape):
    try:
        return BACKBONES[name](input_shape, weights)
    except SystemExit:
        raise
    except Exception as error:
        if weights == "imagenet":
            raise SystemExit(
                f"Could not download ImageNet weights for {name} ({type(error).__name__}); download the "
                f"no-top .h5 file from the Keras applications release on a connected machine and pass "
                f"--weights PATH, or train from scratch with --weights none."
            ) from None
        raise


def is_pretrained(weights) -> bool:
    return weights not in (None, "none")


def leaf_layers(model) -> list:
    """A backbone's layers in order, looking inside nested models (our wrappers hold a
    keras.applications network as one layer, so counting the wrapper's layers would not do)."""
    leaves = []
    for layer in model.layers:
        if getattr(layer, "layers", None):
            leaves += leaf_layers(layer)
        else:
            leaves.append(layer)
    return leaves


def backbone_features(image_size: int, backbone: str, weights: str, augmentation: list):
    """Input, augmentation layers, backbone (preprocessing inside): (inputs, features, backbone).

    A pretrained backbone starts frozen and runs in inference mode, so its BatchNorm
    statistics from ImageNet are kept, also when its top is unfrozen for fine-tuning."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.Sequential(augmentation, name="augmentation")(inputs)
    base = build_backbone(backbone, weights, (image_size, image_size, 3))
    if is_pretrained(weights):
        base.trainable = False
        x = base(x, training=False)
    else:
        x = base(x)
    return inputs, x, base
