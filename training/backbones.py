"""Backbones: the from-scratch CNNs, the keras.applications networks, and how a recipe puts one
under its head (or, for a U-Net, takes its features at several scales).

Every backbone takes float RGB in 0..255; whatever it needs beyond that is a layer inside the
model, applied once: EfficientNet normalises 0..255 itself, MobileNetV2 and Xception want -1..1
(the `preprocess_input` their ImageNet weights were trained with), which our wrapper's Rescaling
layer gives them; EfficientNet-Lite0 has its own Rescaling inside.

EfficientNet-Lite0's ImageNet weights ship in a package (training/pretrained/): `--weights imagenet`
needs no download for it, and its ImageNet head comes with it (`imagenet_head`), so a classifier of
ImageNet classes (the dog breeds) starts from ImageNet's own rows.
"""

from __future__ import annotations

from pathlib import Path

# keras.applications networks: constructor, and whether it wants -1..1 input (else 0..255 as given).
APPLICATIONS = {
    "efficientnetb0": ("EfficientNetB0", False),
    "efficientnetb3": ("EfficientNetB3", False),
    "mobilenetv2": ("MobileNetV2", True),
    "xception": ("Xception", True),
}
# The layers whose outputs a U-Net takes as skips, at strides 2, 4, 8, 16, 32.
ENCODER_FEATURES = {
    "mobilenetv2": ["block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu",
                    "block_16_project"],
    "efficientnetb0": ["block2a_expand_activation", "block3a_expand_activation", "block4a_expand_activation",
                       "block6a_expand_activation", "top_activation"],
}
# The courses' from-scratch CNNs, named for what they are; the old names still work.
ALIASES = {"small": "conv4-gap", "scratch": "conv4-dense", "simple": "conv3-dense"}


def conv4_gap(input_shape):
    """Four 3x3 conv blocks with batch normalisation, then global average pooling: quick to train,
    for tests and demos."""
    import keras
    from keras import layers

    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (16, 32, 64, 128):
        blocks += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),  # momentum set for the run by fitting.match_batchnorm
            layers.Activation("relu"),
            layers.MaxPooling2D(),
        ]
    blocks.append(layers.GlobalAveragePooling2D())
    return keras.Sequential(blocks, name="conv4_gap")


def conv4_dense(input_shape):
    """The movie-poster course's CNN: four 5x5 conv blocks with dropout, then dense 128 and 64."""
    import keras
    from keras import layers

    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (16, 32, 64, 64):
        blocks += [layers.Conv2D(filters, 5, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.25)]
    blocks += [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
               layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return keras.Sequential(blocks, name="conv4_dense")


def conv3_dense(input_shape):
    """The Open Images course's CNN: three 3x3 conv blocks, then dense 64 with strong dropout."""
    import keras
    from keras import layers

    blocks = [layers.Input(input_shape), layers.Rescaling(1.0 / 255)]
    for filters in (32, 32, 64):
        blocks += [layers.Conv2D(filters, 3, activation="relu"), layers.MaxPooling2D()]
    blocks += [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5)]
    return keras.Sequential(blocks, name="conv3_dense")


SCRATCH = {"conv4-gap": conv4_gap, "conv4-dense": conv4_dense, "conv3-dense": conv3_dense}
# Networks whose ImageNet weights ship in a package (training/pretrained/), read offline.
PACKAGED = ("efficientnet_lite0",)
BACKBONES = [*APPLICATIONS, *PACKAGED, *SCRATCH, *ALIASES]  # what --backbone accepts


def is_pretrained(weights) -> bool:
    return weights not in (None, "none")


def application(name: str, weights: str, input_shape, pooling=None):
    """A keras.applications network without its top, with ImageNet weights, a weights file, or none.
    Unreachable ImageNet weights stop the run with one line that says what to do."""
    import keras

    constructor = APPLICATIONS[name][0]
    if weights not in (None, "none", "imagenet") and not Path(weights).is_file():
        raise SystemExit(f"--weights {weights}: no such file (expected {constructor} no-top weights, .h5)")
    try:
        return getattr(keras.applications, constructor)(
            include_top=False, weights=weights if is_pretrained(weights) else None, input_shape=input_shape,
            pooling=pooling)
    except Exception as error:
        if weights == "imagenet":
            raise SystemExit(
                f"Could not download ImageNet weights for {name} ({type(error).__name__}); download the no-top .h5 "
                f"file from the Keras applications release on a connected machine and pass --weights PATH, or "
                f"train from scratch with --weights none.") from None
        raise


def to_input_range(name: str):
    """The layer that brings 0..255 pixels to what application `name` wants, or None."""
    from keras import layers

    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range") if APPLICATIONS[name][1] else None


def build_backbone(name: str, weights: str, input_shape):
    """The backbone `name` (or its old alias) taking 0..255 pixels, pooled to one feature vector."""
    import keras

    name = ALIASES.get(name, name)
    if name in SCRATCH:
        if is_pretrained(weights):
            raise SystemExit(f"The '{name}' backbone is trained from scratch: use --weights none.")
        return SCRATCH[name](input_shape)
    if name in PACKAGED:
        return efficientnet_lite0(weights, input_shape)
    base = application(name, weights, input_shape, pooling="avg")
    scaling = to_input_range(name)
    if scaling is None:
        return base
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, base(scaling(inputs)), name=base.name)


def efficientnet_lite0(weights: str, input_shape, include_top: bool = False):
    """EfficientNet-Lite0, pooled, with the package's ImageNet weights (`imagenet`), a weights file
    of ours (a `.weights.h5` of this network), or none."""
    from training.pretrained import efficientnet_lite

    model = efficientnet_lite.build(input_shape, include_top=include_top)
    if weights == "imagenet":
        state, _ = efficientnet_lite.imagenet_state()
        efficientnet_lite.load_state(model, state)
    elif is_pretrained(weights):
        if not Path(weights).is_file():
            raise SystemExit(f"--weights {weights}: no such file (expected EfficientNet-Lite0 weights, .weights.h5)")
        model.load_weights(weights)
    return model


def imagenet_head(name: str, weights: str):
    """(kernel, bias) of the ImageNet classifier that came with the backbone's weights (1000
    outputs, on its pooled features), or None where there is none (Keras Applications without
    their top, from-scratch networks, weights files)."""
    if ALIASES.get(name, name) not in PACKAGED or weights != "imagenet":
        return None
    from training.pretrained import efficientnet_lite

    state, _ = efficientnet_lite.imagenet_state()
    return state["_fc.weight"].T.copy(), state["_fc.bias"].copy()


def weights_provenance(name: str, weights: str) -> dict | None:
    """Where a packaged backbone's ImageNet weights came from (package, version, file hash, licence),
    for task.json; None for the others."""
    if ALIASES.get(name, name) not in PACKAGED or weights != "imagenet":
        return None
    from training.pretrained import efficientnet_lite

    return efficientnet_lite.imagenet_state()[1]


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
