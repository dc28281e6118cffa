"""Interpretation: where in the picture a network looked for its answer (Grad-CAM).

Grad-CAM (Selvaraju et al. 2017) weighs each channel of the last convolutional feature map by
the mean gradient of one output score with respect to it; the positive part of that weighted sum
is a coarse map of the places that raised the score, resized here to the network's input.

Our networks hold their backbone as one nested layer (a keras.applications model, possibly
wrapped as Input -> Rescaling -> application, or a from-scratch Sequential), so the feature map
is not an output of the bundle's model. `gradcam` rebuilds the model on the same layers and
weights with that feature map as a second output: each nested model on the way to it is rebuilt
to return (feature map, its own output), and its parent calls that version instead
(keras.models.clone_model with `call_function`, reusing the layers). The rebuilt network and its
traced gradient are kept per model, so a tab pays for them once.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
from PIL import Image

# After the last convolution, these layers keep the feature map's shape; Grad-CAM reads the map
# after them (batch normalisation and activation: what the rest of the network sees).
_CONVOLUTIONS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
_SAME_MAP = ("BatchNormalization", "Activation", "ReLU")
COLOUR_MAP = "jet"  # the Grad-CAM papers' and keras-io's: blue where nothing, red where most

_lock = threading.Lock()
_explainers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gradcam(model, pixels, class_index: int | None = None, output: str | None = None,
            layer: str | None = None) -> np.ndarray:
    """The Grad-CAM heatmap of one score: (H, W) in 0..1 at the network's input size.

    `model` is a Keras model or a bundle's network (CompiledNetwork); `pixels` one input as the
    network takes it, (H, W, 3) float RGB in 0..255 (`core.preprocess.model_input`). The score is
    column `class_index` (None: the highest-scoring one) of the model's output, or of output
    `output` for a network with several ("gender"). `layer` names the feature map (default: the
    last convolution's, after its normalisation and activation). All zeros when no place raised
    the score."""
    import tensorflow as tf

    model = getattr(model, "model", model)  # a CompiledNetwork holds its Keras model
    pixels = np.asarray(pixels, np.float32)
    explain = _explainer(model, layer, output)
    scores = model.output[output] if output is not None else model.output
    count = int(np.prod(scores.shape[1:]))
    if class_index is not None and not 0 <= class_index < count:
        raise ValueError(f"class_index {class_index} is outside the {count} scores of {model.name}")
    index = -1 if class_index is None else int(class_index)
    cam = explain(tf.constant(pixels[None]), tf.constant(index, tf.int32)).numpy()
    top = float(cam.max())
    if not np.isfinite(top) or top <= 0:
        return np.zeros(pixels.shape[:2], np.float32)
    height, width = pixels.shape[:2]
    resized = Image.fromarray((cam / top).astype(np.float32), mode="F").resize((width, height),
                                                                               Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)


def overlay(image: Image.Image, heatmap, opacity: float = 0.5) -> Image.Image:
    """The picture with the heatmap in colour over it (resized to the picture: the network saw the
    whole picture stretched to its input, so the map stretches back the same way)."""
    from matplotlib import colormaps

    picture = image.convert("RGB")
    heat = Image.fromarray(np.asarray(heatmap, np.float32), mode="F").resize(picture.size, Image.Resampling.BILINEAR)
    colours = colormaps[COLOUR_MAP](np.clip(np.asarray(heat), 0.0, 1.0))[..., :3] * 255.0
    opacity = float(np.clip(opacity, 0.0, 1.0))
    blended = (1.0 - opacity) * np.asarray(picture, np.float32) + opacity * colours
    return Image.fromarray(np.clip(blended, 0, 255).round().astype(np.uint8), "RGB")


def explain(bundle, image, class_index: int | None = None, network: str = "classifier", output: str | None = None,
            opacity: float = 0.5) -> Image.Image:
    """An image as a tab receives it (path, bytes or PIL) -> the picture with the Grad-CAM map of
    `class_index` (None: the network's top class) over it, decoded and resized as for prediction."""
    from core.images import load_image
    from core.preprocess import resize_for_model

    picture = load_image(image)
    heatmap = gradcam(bundle.network(network), resize_for_model(picture, bundle.input_size), class_index, output)
    return overlay(picture, heatmap, opacity)


def explain_label(bundle, image, label: str | None = None) -> Image.Image:
    """What a tab's Interpret button shows: the picture with the Grad-CAM map of one of the
    classifier's labels by name (None or "": the top one) over it."""
    from core.errors import InputError

    if label and label not in bundle.labels:
        raise InputError(f"'{label}' is not one of this model's labels.")
    # A classifier with extra outputs (the dog probability) names its classes' output "class".
    output = "class" if isinstance(bundle.network("classifier").model.output, dict) else None
    return explain(bundle, image, bundle.labels.index(label) if label else None, output=output)


def feature_layer(model):
    """The layer whose output Grad-CAM reads: the last convolution in the network (nested models
    included), followed through the layers after it that keep its map (batch norm, activation)."""
    leaves = _leaves(model)
    last = max((i for i, leaf in enumerate(leaves) if type(leaf).__name__ in _CONVOLUTIONS), default=None)
    if last is None:
        raise ValueError(f"{model.name} has no convolution: Grad-CAM needs a convolutional feature map")
    shape = tuple(leaves[last].output.shape)
    while (last + 1 < len(leaves) and type(leaves[last + 1]).__name__ in _SAME_MAP
           and tuple(leaves[last + 1].output.shape) == shape):
        last += 1
    return leaves[last]


def _leaves(model) -> list:
    leaves = []
    for layer in model.layers:
        leaves += _leaves(layer) if getattr(layer, "layers", None) else [layer]
    return leaves


def _explainer(model, layer_name: str | None, output: str | None):
    """The traced Grad-CAM of (model, feature map, output), built once per model."""
    key = (layer_name, output)
    with _lock:
        per_model = _explainers.setdefault(model, {})
        if key not in per_model:
            per_model[key] = _build_explainer(model, layer_name, output)
        return per_model[key]


def feature_model(model, layer: str | None = None):
    """The same network (its layers and weights) with two outputs: the feature map Grad-CAM reads
    (`layer`, default `feature_layer`'s) and the model's own output."""
    return _expose(model, _find_layer(model, layer) if layer else feature_layer(model))


def _build_explainer(model, layer_name: str | None, output: str | None):
    import tensorflow as tf

    outputs = model.output
    if isinstance(outputs, dict):
        if output not in outputs:
            raise ValueError(f"{model.name} has outputs {', '.join(outputs)}: name one with output=")
    elif output is not None:
        raise ValueError(f"{model.name} has one output; output={output!r} names none")
    exposed = feature_model(model, layer_name)

    @tf.function(input_signature=[tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32),
                                  tf.TensorSpec((), tf.int32)])
    def cam(pixels, index):
        with tf.GradientTape() as tape:
            features, scores = exposed(pixels, training=False)
            scores = scores[output] if output is not None else scores
            scores = tf.reshape(scores, (1, -1))
            index = tf.where(index < 0, tf.cast(tf.argmax(scores[0]), tf.int32), index)
            score = scores[0, index]
        gradients = tape.gradient(score, features)[0]
        weights = tf.reduce_mean(gradients, axis=(0, 1))  # one weight per channel
        return tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1))

    return cam


def _find_layer(model, name: str):
    for leaf in _leaves(model):
        if leaf.name == name:
            return leaf
    raise ValueError(f"{model.name} has no layer named {name!r}")


def _expose(model, target):
    """A model on new inputs, with `model`'s layers and weights, whose outputs are (target's feature
    map, model's output). The graph is traced afresh: a loaded model's layers keep the nodes of
    every graph they were built into, so `target.output` may belong to none of the current ones."""
    import keras

    found = []

    def call(layer, *args, **kwargs):
        if layer is target:
            result = layer(*args, **kwargs)
            found.append(result)
            return result
        if getattr(layer, "layers", None) and _contains(layer, target):
            features, result = _expose(layer, target)(*args, **kwargs)
            found.append(features)
            return result
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):  # clone_model takes no call_function for these: a chain
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        outputs = inputs
        for layer in model.layers:
            outputs = call(layer, outputs)
    else:
        rebuilt = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
        inputs, outputs = rebuilt.input, rebuilt.output
    return keras.Model(inputs, [found[0], outputs])


def _contains(model, target) -> bool:
    return any(layer is target or (getattr(layer, "layers", None) and _contains(layer, target))
               for layer in model.layers)
