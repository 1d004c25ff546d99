"""ONNX export: a model built from the library's layers as an ONNX graph (opset 17), as it computes
in eval mode, so that onnxruntime, Netron or any deployment runtime can read it.

    diynn.onnx.export(model, "cnn.onnx", input_shape=(1, 28, 28))  # one sample's shape

Needs the `onnx` package (pip install -e ".[onnx]"). The batch axis is dynamic ("batch"); each
layer maps to one ONNX operator (Dropout to Identity, Embedding to Gather, LayerNorm to
LayerNormalization, Permute to Transpose, PositionEmbedding to Add, TokenPool to ReduceMean or
Gather) or a few (Linear to MatMul and Add, GELU and SiLU to their formulas: opset 17 has
no Gelu), MultiheadAttention to its products (MatMul, Reshape, Transpose, Softmax; its masks, graph
inputs, as Where or Add); a layer without one is a ValueError naming it. A model that starts with an
Embedding takes int64 indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..autoencoder import Autoencoder
from ..backends import backend_of
from ..functional.activations import SQRT_HALF, TANH_CUBIC, TANH_SCALE
from ..grad_mode import no_grad
from ..layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    ClassToken,
    Concat,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool1d,
    MaxPool2d,
    MultiheadAttention,
    Permute,
    PositionEmbedding,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    TokenPool,
    Unflatten,
    Upsample,
)
from ..module import Module
from .files import atomic_write

OPSET = 17
MASKS = ("key_padding_mask", "attn_mask")  # the masks a graph may take as inputs, for its attention layers
SLICE_FIRST = ((0, "starts"), (1, "ends"), (1, "axes"))  # Slice's operands for x[:, 0:1]


def export(model: Module, path, input_shape, *, masks=None) -> Path:
    """Write `model` to `path` as ONNX (opset 17), as it computes in eval mode.

    The model's own mode is left as it was. The graph is checked with onnx.checker before the file
    is written (atomically); its input is (batch, *input_shape) of the model's dtype (int64 token ids
    for a model that starts with an Embedding), the batch axis dynamic.

    Args:
        model: a Module with parameters, built from the layers that have an ONNX operator.
        path: the .onnx file to write.
        input_shape: one sample's shape, e.g. (784,) or (1, 28, 28).
        masks: None, or the masks the graph takes as inputs after "input", each applied by every
            MultiheadAttention in it as its forward argument of that name (torch.nn.MultiheadAttention's
            convention: a boolean True masks a key out, a float mask is added), as {name: "bool" or
            "float"}: "key_padding_mask" ((batch, S)), "attn_mask" ((L, S)).

    Returns:
        path: the file written, as a Path.

    Raises:
        ImportError: the onnx package is not installed.
        TypeError: a model that is not a Module with parameters.
        ValueError: a bad input_shape, or a layer that cannot be exported (named).
    """
    try:
        import onnx
    except ImportError as error:
        raise ImportError('ONNX export needs the onnx package: pip install -e ".[onnx]"') from error
    if not isinstance(model, Module) or not model.parameters():
        raise TypeError(f"export needs a diynn model with parameters, got {type(model).__name__}")
    if not isinstance(input_shape, (tuple, list)) or not all(isinstance(s, int) and s > 0 for s in input_shape):
        raise ValueError(f"input_shape must be one sample's shape, positive integers, got {input_shape!r}")
    masks = dict(masks or {})
    for name, kind in masks.items():
        if name not in MASKS or kind not in ("bool", "float"):
            raise ValueError(f"masks names {', '.join(MASKS)}, each 'bool' or 'float'; got {name!r}: {kind!r}")
    parameter = model.parameters()[0].data
    graph = _Graph(onnx, masks, backend_of(parameter).to_numpy(parameter).dtype)
    output = graph.add(model, "input")
    element = onnx.helper.np_dtype_to_tensor_dtype(graph.dtype)
    indices = model.takes_indices  # the graph takes integer indices (int64)
    output_shape = _output_shape(model, input_shape, parameter, indices)
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes,
            type(model).__name__,
            _graph_inputs(onnx, element, input_shape, indices, masks),
            [onnx.helper.make_tensor_value_info(output, element, ["batch", *output_shape])],
            graph.initializers,
        ),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="diynn",
    )
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    with atomic_write(path) as file:
        file.write(proto.SerializeToString())
    return path


def _graph_inputs(onnx, element, input_shape, indices, masks) -> list:
    """The graph's inputs: "input" (batch, *input_shape), int64 where the model starts with an
    Embedding (token ids), else of the model's dtype; then the masks its attention layers apply."""
    make = onnx.helper.make_tensor_value_info
    inputs = [make("input", onnx.TensorProto.INT64 if indices else element, ["batch", *input_shape])]
    for name, kind in masks.items():
        shape = ["batch", "keys"] if name == "key_padding_mask" else ["length", "keys"]
        inputs.append(make(name, onnx.TensorProto.BOOL if kind == "bool" else element, shape))
    return inputs


def _output_shape(model, input_shape, parameter, indices=False) -> tuple:
    """One sample's output shape: the model run in eval mode on one zero sample (of indices where
    the model starts with an Embedding)."""
    xp = backend_of(parameter).xp
    dtype = xp.int64 if indices else parameter.dtype
    was_training = model.training
    try:
        with no_grad():
            y = model.eval()(xp.zeros((1, *input_shape), dtype=dtype, device=parameter.device))
    finally:
        model.train(was_training)
    return tuple(y.shape[1:])


class _Graph:
    """The nodes and initialisers built so far; `add(module, input)` appends a module's nodes."""

    def __init__(self, onnx, masks=None, dtype=np.float32):
        self.onnx, self.nodes, self.initializers, self.count = onnx, [], [], 0
        self.dtype = np.dtype(dtype)  # the model's: that of the constants in formulas (GELU's)
        self.masks = masks or {}  # graph inputs the attention layers apply: {name: "bool" or "float"}

    def numpy(self, array):
        return backend_of(array).to_numpy(array)

    def constant(self, array, name: str) -> str:
        name = f"{name}_{self.count}"
        self.count += 1
        self.initializers.append(self.onnx.numpy_helper.from_array(self.numpy(array), name))
        return name

    def scalar(self, value: float, name: str) -> str:
        """A constant number of the model's dtype."""
        return self.constant(np.asarray(value, self.dtype), name)

    def node(self, operator: str, inputs: list[str], **attributes) -> str:
        output = f"{operator.lower()}_{self.count}"
        self.count += 1
        self.nodes.append(self.onnx.helper.make_node(operator, inputs, [output], **attributes))
        return output

    def add(self, module: Module, x: str) -> str:
        for kind, exporter in EXPORTERS.items():
            if type(module) is kind:
                return exporter(self, module, x)
        exportable = ", ".join(sorted(kind.__name__ for kind in EXPORTERS))
        raise ValueError(f"{type(module).__name__} cannot be exported to ONNX; exportable layers: {exportable}")

    def weights(self, module) -> list[str]:
        """The module's weight, and its bias where it has one, as initialisers."""
        names = [self.constant(module.weight.data, "weight")]
        if module.bias is not None:
            names.append(self.constant(module.bias.data, "bias"))
        return names


def _sequence(graph, module, x):
    for layer in module.layers:
        x = graph.add(layer, x)
    return x


def _convolution(operator):
    def exporter(graph, module, x):
        kernel, stride, padding = module.kernel_size, module.stride, module.padding
        if isinstance(module, Conv1d):  # the 2-D geometry of a height-1 image
            kernel, stride, padding = kernel[1:], stride[1:], padding[1:]
        attributes = {"kernel_shape": list(kernel), "strides": list(stride), "pads": [*padding, *padding]}
        if isinstance(module, ConvTranspose2d):
            attributes["output_padding"] = list(module.output_padding)
        if isinstance(module, Conv2d):
            dilation = module.dilation[1:] if isinstance(module, Conv1d) else module.dilation
            attributes |= {"dilations": list(dilation), "group": module.groups}
        return graph.node(operator, [x, *graph.weights(module)], **attributes)

    return exporter


def _pool(operator, **extra):
    def exporter(graph, module, x):
        kernel, stride, padding = module.kernel_size, module.stride, module.padding
        if isinstance(module, MaxPool1d):
            kernel, stride, padding = kernel[1:], stride[1:], padding[1:]
        attributes = {"kernel_shape": list(kernel), "strides": list(stride), "pads": [*padding, *padding]}
        return graph.node(operator, [x], **attributes, **extra)

    return exporter


def _batch_norm(graph, module, x):
    inputs = [x] + [
        graph.constant(array, name)
        for array, name in (
            (module.weight.data, "scale"),
            (module.bias.data, "shift"),
            (module.running_mean, "mean"),
            (module.running_var, "var"),
        )
    ]
    return graph.node("BatchNormalization", inputs, epsilon=module.eps)


def _flatten(graph, module, x):
    """Flatten(1): ONNX's Flatten; Flatten(k) for k >= 0 to the last axis: Reshape to k axes kept, then -1."""
    if (module.start_dim, module.end_dim) == (1, -1):
        return graph.node("Flatten", [x], axis=1)
    if module.start_dim < 0 or module.end_dim != -1:
        raise ValueError(
            f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) cannot be exported to ONNX: "
            "only a start_dim >= 0 with end_dim -1 (the shape's rank is not tracked)"
        )
    shape = graph.constant(np.asarray([0] * module.start_dim + [-1], np.int64), "shape")
    return graph.node("Reshape", [x, shape])


def _class_token(graph, module, x):
    """[c; x]: the token (1, 1, E) expanded to the shape of x[:, :1] (N, 1, E), put in front along axis 1."""
    starts, ends, axes = (graph.constant(np.asarray([v], np.int64), name) for v, name in SLICE_FIRST)
    first = graph.node("Slice", [x, starts, ends, axes])
    token = graph.node("Expand", [graph.constant(module.weight.data, "token"), graph.node("Shape", [first])])
    return graph.node("Concat", [token, x], axis=1)


def _token_pool(graph, module, x):
    if module.mode == "mean":
        return graph.node("ReduceMean", [x], axes=[1], keepdims=0)
    return graph.node("Gather", [x, graph.constant(np.asarray(0, np.int64), "first")], axis=1)


def _unflatten(graph, module, x):  # the shape operand of Reshape: 0 keeps the batch axis
    return graph.node("Reshape", [x, graph.constant(np.asarray([0, *module.shape], np.int64), "shape")])


def _residual(graph, module, x):
    return graph.node("Add", [graph.add(module.block, x), graph.add(module.shortcut, x)])


def _concat(graph, module, x):
    return graph.node("Concat", [graph.add(branch, x) for branch in module.branches], axis=module.axis)


def _adaptive_avg_pool(graph, module, x):
    if tuple(module.output_size) == (1, 1):
        return graph.node("GlobalAveragePool", [x])
    raise ValueError(
        f"AdaptiveAvgPool2d with output_size {list(module.output_size)} cannot be exported to ONNX "
        "(its bins depend on the input's size); output_size 1 exports as GlobalAveragePool"
    )


def _upsample(graph, module, x):
    scales = module.scale_factor if isinstance(module.scale_factor, list) else [module.scale_factor] * 2
    scales = graph.constant(np.asarray([1.0, 1.0, *scales], np.float32), "scales")
    if module.mode == "nearest":  # PyTorch's nearest: the input pixel floor(i / s)
        attributes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        mode = "align_corners" if module.align_corners else "pytorch_half_pixel"
        attributes = {"mode": "linear", "coordinate_transformation_mode": mode}
    return graph.node("Resize", [x, "", scales], **attributes)


def _multihead_attention(graph, module, x):
    """x (N, L, E) -> q, k, v = x W^T + b split into heads, softmax(q k^T / sqrt(D) + masks) v, the
    heads side by side, out_proj: the graph's masks applied as Where (boolean: True masks out) or Add."""
    if not module.batch_first:
        raise ValueError(
            "MultiheadAttention with batch_first=False cannot be exported to ONNX (the graph's batch axis is the first)"
        )
    e, h = module.embed_dim, module.num_heads
    weight = graph.numpy(module.in_proj_weight.data)
    bias = None if module.in_proj_bias is None else graph.numpy(module.in_proj_bias.data)
    heads = graph.constant(np.asarray([0, 0, h, e // h], np.int64), "heads")  # (N, L, E) -> (N, L, H, D)
    projected = []
    for i, order in enumerate(([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3])):  # q (N, H, L, D), k^T (N, H, D, S), v
        rows = slice(i * e, (i + 1) * e)
        p = graph.node("MatMul", [x, graph.constant(np.ascontiguousarray(weight[rows].T), "weight")])
        if bias is not None:
            p = graph.node("Add", [p, graph.constant(bias[rows], "bias")])
        projected.append(graph.node("Transpose", [graph.node("Reshape", [p, heads])], perm=order))
    q, k_transposed, v = projected
    dtype = weight.dtype
    logits = graph.node(
        "Mul",
        [graph.node("MatMul", [q, k_transposed]), graph.constant(np.asarray(1 / np.sqrt(e // h), dtype), "scale")],
    )
    for name, kind in graph.masks.items():
        mask = name
        if name == "key_padding_mask":  # (N, S) -> (N, 1, 1, S)
            mask = graph.node("Unsqueeze", [name, graph.constant(np.asarray([1, 2], np.int64), "axes")])
        if kind == "bool":
            logits = graph.node("Where", [mask, graph.constant(np.asarray(-np.inf, dtype), "minus_infinity"), logits])
        else:
            logits = graph.node("Add", [logits, mask])
    weights = graph.node("Softmax", [logits], axis=-1)
    if graph.masks:  # a query with every key masked: Softmax gives NaN (0 / 0), diynn weights 0
        zero = graph.constant(np.asarray(0, dtype), "zero")
        weights = graph.node("Where", [graph.node("IsNaN", [weights]), zero, weights])
    y = graph.node("Transpose", [graph.node("MatMul", [weights, v])], perm=[0, 2, 1, 3])  # (N, L, H, D)
    y = graph.node("Reshape", [y, graph.constant(np.asarray([0, 0, e], np.int64), "shape")])
    out = module.out_proj
    y = graph.node("MatMul", [y, graph.constant(np.ascontiguousarray(graph.numpy(out.weight.data).T), "weight")])
    return y if out.bias is None else graph.node("Add", [y, graph.constant(out.bias.data, "bias")])


def _linear(graph, module, x):  # MatMul rather than Gemm, which takes 2-D inputs only: x (N, ..., in)
    y = graph.node("MatMul", [x, graph.constant(np.ascontiguousarray(graph.numpy(module.weight.data).T), "weight")])
    return y if module.bias is None else graph.node("Add", [y, graph.constant(module.bias.data, "bias")])


def _layer_norm(graph, module, x):
    shape = module.normalized_shape
    scale = np.ones(shape, graph.dtype) if module.weight is None else module.weight.data
    inputs = [x, graph.constant(scale, "scale")]
    if module.bias is not None:
        inputs.append(graph.constant(module.bias.data, "shift"))
    return graph.node("LayerNormalization", inputs, axis=-len(shape), epsilon=module.eps)


def _gelu(graph, module, x):
    """x (1 + t) / 2, t = Erf(x / sqrt(2)), or Tanh(sqrt(2 / pi) (x + 0.044715 x^3)) (opset 20 has Gelu; 17 not)."""
    if module.approximate == "tanh":
        cube = graph.node("Mul", [graph.node("Mul", [x, x]), x])
        inner = graph.node("Add", [x, graph.node("Mul", [cube, graph.scalar(TANH_CUBIC, "cubic")])])
        t = graph.node("Tanh", [graph.node("Mul", [inner, graph.scalar(TANH_SCALE, "scale")])])
    else:
        t = graph.node("Erf", [graph.node("Mul", [x, graph.scalar(SQRT_HALF, "sqrt_half")])])
    cdf = graph.node("Mul", [graph.node("Add", [t, graph.scalar(1, "one")]), graph.scalar(0.5, "half")])
    return graph.node("Mul", [x, cdf])


def _embedding(graph, module, x):
    return graph.node("Gather", [graph.constant(module.weight.data, "weight"), x], axis=0)


EXPORTERS = {
    Sequential: _sequence,
    Residual: _residual,
    Concat: _concat,
    Identity: lambda graph, module, x: graph.node("Identity", [x]),
    AdaptiveAvgPool2d: _adaptive_avg_pool,
    Upsample: _upsample,
    Autoencoder: lambda graph, module, x: graph.add(module.decoder, graph.add(module.encoder, x)),
    Linear: _linear,
    MultiheadAttention: _multihead_attention,
    Conv2d: _convolution("Conv"),
    Conv1d: _convolution("Conv"),
    ConvTranspose2d: _convolution("ConvTranspose"),
    MaxPool2d: _pool("MaxPool"),
    MaxPool1d: _pool("MaxPool"),
    AvgPool2d: _pool("AveragePool", count_include_pad=1),
    BatchNorm1d: _batch_norm,
    BatchNorm2d: _batch_norm,
    Dropout: lambda graph, module, x: graph.node("Identity", [x]),
    Flatten: _flatten,
    Permute: lambda graph, module, x: graph.node("Transpose", [x], perm=list(module.dims)),
    PositionEmbedding: lambda graph, module, x: graph.node("Add", [x, graph.constant(module.weight.data, "position")]),
    ClassToken: _class_token,
    TokenPool: _token_pool,
    Unflatten: _unflatten,
    ReLU: lambda graph, module, x: graph.node("Relu", [x]),
    LeakyReLU: lambda graph, module, x: graph.node("LeakyRelu", [x], alpha=module.negative_slope),
    Tanh: lambda graph, module, x: graph.node("Tanh", [x]),
    Sigmoid: lambda graph, module, x: graph.node("Sigmoid", [x]),
    SiLU: lambda graph, module, x: graph.node("Mul", [x, graph.node("Sigmoid", [x])]),
    GELU: _gelu,
    LayerNorm: _layer_norm,
    Embedding: _embedding,
    Softmax: lambda graph, module, x: graph.node("Softmax", [x], axis=module.axis),
}
