"""`summary(model, input_shape)`: each layer's output shape, parameters, memory kept for the backward
and forward FLOPs, measured by running the model once on zeros (what is counted: `Summary`'s
docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from array_api_compat import is_array_api_obj

from ..autoencoder import Autoencoder
from ..backends import backend_of, get_backend
from ..grad_mode import enable_grad
from ..layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    ClassToken,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
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
from .probe import pending_caches, preserved, recording, tree, unique_modules
from .table import byte_size, quantity, table


@dataclass(frozen=True)
class LayerSummary:
    """One row of a `Summary`: a module at one place in the model.

    Attributes:
        path: the dotted place ("" for the model itself, "3.block.1"), as in `state_dict`'s names.
        depth: how deep it is nested (0 for the model).
        layer: the module's class name.
        output_shape: the output's shape in the measured forward, batch axis first (None: not run).
        calls: how often the forward called it (a module shared by two branches: 2).
        parameters: the number of elements of its own parameters (not its children's).
        trainable: how many of those are trained (not frozen).
        backward_bytes: the bytes its pending caches hold after the forward (all its calls).
        flops: its own forward FLOPs per sample (all its calls); None where the cost is unknown.
        shared_with: for a module met again at another place, the path where it came first (its
            numbers are counted there, and are 0 here); None otherwise.
    """

    path: str
    depth: int
    layer: str
    output_shape: tuple | None
    calls: int
    parameters: int
    trainable: int
    backward_bytes: int
    flops: int | None
    shared_with: str | None = None


@dataclass(frozen=True)
class Summary:
    """What `summary` measured: one row per module, and the model's totals.

    `str(summary)` is a table, nested modules indented under their containers.

    What is counted:

    - Parameters: each parameter once (a module shared by two branches counts once), its number
      of elements; frozen ones (`requires_grad = False`) are not trainable.
    - Bytes kept for backward: after the forward, the arrays held in each module's pending caches
      (what its `backward` will consume), each distinct array once per module, at its `nbytes`.
      Arrays that are the model's parameters or buffers, or views of them (a convolution keeps its
      weight), are not counted: they exist with or without the forward. An array held by two
      modules (a ReLU keeps its output, the Linear after it keeps the same array as its input)
      counts for each: the total is the sum over modules of what each holds. So does an array a
      cache shares with other calls (the compiled convolution's index table for its geometry).
    - FLOPs per sample of the forward: 2 x the multiply-adds of Linear, Conv1d, Conv2d (C_in /
      groups x kh x kw per output element, whatever the dilation) and ConvTranspose2d, plus one
      per output element for a bias; one per output element for elementwise work (activations,
      Softmax, batch and layer normalisation, Dropout with p > 0, a Residual's sum, an
      Autoencoder's noise, a PositionEmbedding's sum); pooling one per window element read (kh x
      kw per output; adaptive average pooling and TokenPool's mean one per input element);
      bilinear upsampling 8 per output element (4 taps, a multiply-add each); MultiheadAttention
      (self-attention of L tokens of E features, H heads) per token 2 x 3E^2 + 3E for the input
      projections, 2 x 2 L E for the scores and the weighted sum of values, H L for the softmax
      and H L for a dropout (its out_proj is a Linear of its own row); 0 for moving data (Flatten, Unflatten, Permute,
      Identity, Concat, nearest upsampling, an Embedding's lookup, a ClassToken, containers). A
      subclass counts as its library class; a layer of another kind has an unknown cost: its FLOPs
      are None ("?" in the table) and the total leaves it out.

    Attributes:
        rows: one `LayerSummary` per module and place, parents before their children.
        input_shape: the shape fed in, (batch_size, *input_shape).
        dtype: the name of the parameters' dtype in the measurement.
        total_parameters: the elements of every parameter, each parameter once.
        trainable_parameters: those of parameters that are not frozen.
        backward_bytes: the sum over modules of `LayerSummary.backward_bytes`, at the batch given.
        flops: the forward FLOPs per sample, summed over the layers whose cost is known.
        unknown_cost: the class names of layers whose FLOPs are unknown (left out of `flops`).
        input_dtype: the name of the input's dtype (that of the parameters, or int64 token ids).
    """

    rows: tuple[LayerSummary, ...]
    input_shape: tuple
    dtype: str
    total_parameters: int
    trainable_parameters: int
    backward_bytes: int
    flops: int
    unknown_cost: tuple[str, ...] = ()
    input_dtype: str | None = None

    def __str__(self) -> str:
        cells = [_cells(row) for row in self.rows]
        headers = ["Layer", "Output shape", "Parameters", "Trainable", "Kept for backward", "FLOPs/sample"]
        frozen = self.total_parameters - self.trainable_parameters
        lines = [
            table(headers, cells, right={2, 4, 5}),
            "",
            f"Input: {self.input_shape} {self.input_dtype or self.dtype}"
            + (f", parameters {self.dtype}" if self.input_dtype not in (None, self.dtype) else ""),
            f"Parameters: {self.total_parameters:,} ({self.trainable_parameters:,} trainable, {frozen:,} frozen)",
            f"Kept for backward at batch {self.input_shape[0]}: {byte_size(self.backward_bytes)} "
            f"({self.backward_bytes:,} bytes, summed over layers)",
            f"Forward FLOPs per sample: {quantity(self.flops)} ({self.flops:,})"
            + (f"; unknown cost, left out: {', '.join(self.unknown_cost)}" if self.unknown_cost else ""),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _cells(row: LayerSummary) -> list[str]:
    name = "  " * row.depth + (f"{row.path} " if row.path else "") + row.layer
    if row.shared_with is not None:
        return [name, f"(shared with {row.shared_with})", "", "", "", ""]
    shape = "not run" if row.output_shape is None else str(row.output_shape)
    if row.calls > 1:
        shape += f" x{row.calls}"
    if not row.parameters:
        parameters, trainable = "--", ""
    else:
        parameters = f"{row.parameters:,}"
        everything = row.trainable == row.parameters
        trainable = "yes" if everything else "frozen" if not row.trainable else f"{row.trainable:,}"
    flops = "?" if row.flops is None else quantity(row.flops)
    return [name, shape, parameters, trainable, byte_size(row.backward_bytes), flops]


def summary(model: Module, input_shape, batch_size: int | None = None, dtype=None, input_dtype=None) -> Summary:
    """Each layer's output shape, parameters, memory kept for the backward and forward FLOPs.

    Runs one training-mode forward on zeros of shape (batch_size, *input_shape), observing every
    module (no hooks needed), measures what each module's pending caches hold, and then leaves the
    model exactly as it was: modes, pending caches, running statistics, random streams.

    What is counted, and how, is `Summary`'s docstring.

    Args:
        model: any Module, e.g. `diynn.cnn()`.
        input_shape: the shape of one sample, without the batch axis: (1, 28, 28) for `cnn`, 784
            (or (784,)) for an MLP on flattened images.
        batch_size: N of the forward: the bytes kept for backward are those at this batch. None:
            1, or 2 where the model has a BatchNorm1d (in training mode it needs two values per
            channel).
        dtype: the dtype of the zeros and of the parameters in the measurement (the model is
            converted for it, then restored), a dtype of the model's backend or its name
            ("float64"); None: the parameters' dtype (float32 unless converted).
        input_dtype: the dtype of the zeros (or its name) where it is not `dtype`'s; None: int64
            where the model begins with an Embedding (token ids: (L,) is the input_shape of a
            sequence of L tokens), else the parameters' dtype.

    Returns:
        summary: a `Summary`; `str(summary)` is a table.

    Raises:
        TypeError: a model that is not a Module.
        ValueError: an input shape or batch size that is not positive integers.

    Example:
        >>> print(diynn.summary(diynn.cnn(), (1, 28, 28)))  # doctest: +SKIP
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary needs a diynn Module, got {type(model).__name__}")
    input_shape = _shape(input_shape)
    batch_size = _batch_size(model, batch_size)
    backend = model.backend or get_backend()
    with preserved(model):
        if dtype is not None:
            model.astype(getattr(backend.xp, dtype) if isinstance(dtype, str) else dtype)
        parameters = model.parameters()
        dtype = parameters[0].data.dtype if parameters else backend.xp.float32
        x = _zeros(model, backend.xp, (batch_size, *input_shape), dtype, input_dtype)
        model.train()
        with enable_grad(), recording(model) as (forwards, _):
            model(x)
        rows, unknown = _rows(model, forwards, batch_size)
    counted = model.parameters()  # each once
    return Summary(
        rows=tuple(rows),
        input_shape=tuple(x.shape),
        dtype=str(dtype).rpartition(".")[2],
        input_dtype=str(x.dtype).rpartition(".")[2],
        total_parameters=sum(_size(p.data) for p in counted),
        trainable_parameters=sum(_size(p.data) for p in counted if p.requires_grad),
        backward_bytes=sum(row.backward_bytes for row in rows),
        flops=sum(row.flops or 0 for row in rows),
        unknown_cost=tuple(dict.fromkeys(unknown)),
    )


def _zeros(model, xp, shape, dtype, input_dtype):
    """The measurement's input: zeros of `input_dtype` (a dtype or its name), else int64 token ids
    where the model begins with an Embedding, else of the parameters' `dtype`."""
    if input_dtype is None:
        input_dtype = xp.int64 if model.takes_indices else dtype
    return xp.zeros(shape, dtype=getattr(xp, input_dtype) if isinstance(input_dtype, str) else input_dtype)


def _shape(input_shape) -> tuple:
    shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    if (
        not isinstance(shape, (tuple, list))
        or not shape
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ValueError(f"input_shape must be positive integers (one sample, no batch axis), got {input_shape!r}")
    return tuple(shape)


def _batch_size(model, batch_size) -> int:
    if batch_size is None:  # a BatchNorm1d's training-mode forward needs two values per channel
        return 2 if any(isinstance(module, BatchNorm1d) for module in model.modules()) else 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _rows(model, forwards, batch_size):
    """The rows of a model just run (its caches still pending), and the unknown layers' names."""
    calls = {}
    for call in forwards:
        calls.setdefault(id(call.module), []).append(call)
    owned = {id(_memory_owner(array)) for module in unique_modules(model) for array in _own_arrays(module)}
    rows, first_place, unknown = [], {}, []
    for node in tree(model):
        module = node.module
        name = type(module).__name__
        if id(module) in first_place:
            rows.append(LayerSummary(node.path, node.depth, name, None, 0, 0, 0, 0, 0, first_place[id(module)]))
            continue
        first_place[id(module)] = node.path
        own = calls.get(id(module), [])
        flops = 0
        for call in own:
            cost = _flops(module, _shape_of(call.given), _shape_of(call.returned))
            flops = None if cost is None or flops is None else flops + cost
        if flops is None:
            unknown.append(name)
        size = sum(_size(p.data) for p in module._parameters.values())
        rows.append(
            LayerSummary(
                path=node.path,
                depth=node.depth,
                layer=name,
                output_shape=_shape_of(own[0].returned) if own else None,
                calls=len(own),
                parameters=size,
                trainable=sum(_size(p.data) for p in module._parameters.values() if p.requires_grad),
                backward_bytes=held_bytes(module, owned),
                flops=None if flops is None else flops // batch_size,
            )
        )
    return rows, unknown


def _own_arrays(module):
    yield from (parameter.data for parameter in module._parameters.values())
    yield from (getattr(module, name) for name in module._buffers)


def held_bytes(module: Module, excluded=frozenset()) -> int:
    """The bytes of the distinct arrays in `module`'s pending caches (its own, not its children's).

    Args:
        module: a module after a forward that kept its cache.
        excluded: ids of memory owners not to count (the model's parameters and buffers).

    Returns:
        bytes: the sum of `nbytes` over the arrays found in the caches (through tuples, lists and
            dicts), each array once, skipping those whose memory belongs to `excluded`.
    """
    seen, total = set(), 0
    for array in _arrays_in(pending_caches(module)):
        if id(array) in seen or id(_memory_owner(array)) in excluded:
            continue
        seen.add(id(array))
        total += backend_of(array).nbytes(array)
    return total


def _arrays_in(value, depth=0):
    if is_array_api_obj(value):
        yield value
    elif depth < 16 and isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays_in(item, depth + 1)
    elif depth < 16 and isinstance(value, dict):
        for item in value.values():
            yield from _arrays_in(item, depth + 1)


def _memory_owner(array):
    return backend_of(array).memory_owner(array)


def _size(array) -> int:
    return math.prod(array.shape)


def _shape_of(value):
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def _flops(module, x, y):
    """The forward FLOPs of one call on the whole batch (input shape x, output shape y), or None."""
    for cls in type(module).__mro__:
        rule, shaped = _RULES.get(cls), _FROM_SHAPES.get(cls)
        if rule is not None or shaped is not None:
            if x is None or y is None:
                return None
            return shaped(module, x, y) if shaped is not None else rule(module, math.prod(x), math.prod(y))
    return None


def _convolution(module, inputs, outputs):
    # each output element: C_in / groups input channels x kh x kw taps (dilation spaces them only)
    taps = module.in_channels // module.groups * math.prod(module.kernel_size)
    return 2 * outputs * taps + (outputs if module.bias is not None else 0)


def _transposed_convolution(module, inputs, outputs):
    # each input element is spread over C_out / groups channels x kh x kw output positions
    taps = module.out_channels // module.groups * math.prod(module.kernel_size)
    return 2 * inputs * taps + (outputs if module.bias is not None else 0)


def _self_attention(module, x, y):
    # x: (N, L, E), or (L, N, E) sequence first; the keys are the L queries (self-attention)
    tokens, length, e = math.prod(x[:-1]), x[1] if module.batch_first else x[0], module.embed_dim
    projections = 2 * tokens * e * 3 * e + (3 * e * tokens if module.in_proj_bias is not None else 0)
    weights = tokens * module.num_heads * length  # each head's L weights per query: the softmax, the dropout
    return projections + 2 * 2 * tokens * length * e + weights * (2 if module.dropout else 1)


def _elementwise(module, inputs, outputs):
    return outputs


def _nothing(module, inputs, outputs):
    return 0


_RULES = {
    Linear: lambda m, inputs, outputs: 2 * outputs * m.in_features + (outputs if m.bias is not None else 0),
    Conv2d: _convolution,  # Conv1d too: its kernel is (1, k)
    ConvTranspose2d: _transposed_convolution,
    MaxPool2d: lambda m, inputs, outputs: outputs * math.prod(m.kernel_size),  # MaxPool1d too
    AvgPool2d: lambda m, inputs, outputs: outputs * math.prod(m.kernel_size),
    AdaptiveAvgPool2d: lambda m, inputs, outputs: inputs,
    Upsample: lambda m, inputs, outputs: 8 * outputs if m.mode == "bilinear" else 0,
    Dropout: lambda m, inputs, outputs: outputs if m.p else 0,
    Autoencoder: lambda m, inputs, outputs: inputs if m.noise_std > 0 else 0,
    TokenPool: lambda m, inputs, outputs: inputs if m.mode == "mean" else 0,
    **dict.fromkeys((ReLU, LeakyReLU, Tanh, Sigmoid, GELU, SiLU, Softmax), _elementwise),
    **dict.fromkeys((BatchNorm1d, BatchNorm2d, LayerNorm, Residual, PositionEmbedding), _elementwise),
    **dict.fromkeys((Sequential, Concat, Identity, Flatten, Unflatten, Permute, Embedding, ClassToken), _nothing),
}
_FROM_SHAPES = {MultiheadAttention: _self_attention}  # rules of (module, x's shape, y's shape)
