"""cuDNN's convolutions through NVIDIA's Python frontend (`nvidia-cudnn-frontend`, module `cudnn`),
for the CuPy backend.

A convolution's geometry (input, weight and output shapes, dtype, padding, stride) gets three cuDNN
graphs, built on its first use and cached: the forward (fprop), the input gradient (dgrad) and the
weight gradient (wgrad); a transposed convolution runs the same three in another order. They run
on CuPy's current stream with raw device pointers and one workspace, grown when a graph is built
(never while a CUDA graph records). Engines that use tensor cores or convert their inputs down are
deselected, so float32 stays float32 (no TF32). Operands are C-contiguous NCHW arrays.

A geometry that cuDNN cannot serve with all three graphs gets None, and the caller runs its im2col
path; the reason is kept in `unsupported` and said once in a warning.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

DILATION = [1, 1]

# each operation's operands, in the frontend's order (first, second, result), named by which of the
# convolution's arrays they are: its input x, weight w, output y
OPERATIONS = {
    "forward": ("x", "w", "y"),  # y = conv(x, w)
    "backward_data": ("y", "w", "x"),  # dL/dx from dL/dy and w
    "backward_filter": ("x", "y", "w"),  # dL/dw from x and dL/dy
}


class Geometry(NamedTuple):
    """What a convolution's graphs depend on (the plan cache's key)."""

    dtype: str
    input_shape: tuple  # (N, C, H, W)
    weight_shape: tuple  # (O, C, kh, kw)
    output_shape: tuple  # (N, O, OH, OW)
    padding: tuple
    stride: tuple


def c_order_strides(shape) -> list[int]:
    """Element strides of a C-contiguous array of `shape`."""
    return [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]


class ConvolutionGraphs:
    """The plan cache: `convolution(...)` returns a geometry's Convolution, or None."""

    def __init__(self, cudnn, xp, pointer, current_stream):
        """cudnn: the frontend module; xp: the array namespace (for the workspace); pointer(array):
        its device address; current_stream(): the handle (int) of the stream work goes to."""
        self._cudnn, self._xp, self._pointer, self._current_stream = cudnn, xp, pointer, current_stream
        self._handle = cudnn.create_handle()
        self._stream = None
        self._convolutions: dict[Geometry, Convolution | None] = {}
        self._workspace = xp.empty(0, dtype=xp.uint8)
        self.unsupported: dict[Geometry, str] = {}

    def convolution(self, input_shape, weight_shape, output_shape, dtype, padding, stride):
        """The graphs of the convolution of an input (N, C, H, W) with a weight (O, C, kh, kw) into
        an output (N, O, OH, OW), or None where cuDNN cannot run one of them."""
        geometry = Geometry(str(dtype), *map(tuple, (input_shape, weight_shape, output_shape, padding, stride)))
        if geometry not in self._convolutions:
            self._convolutions[geometry] = self._build(geometry)
        return self._convolutions[geometry]

    def _build(self, geometry: Geometry):
        kinds = {"float32": self._cudnn.data_type.FLOAT, "float64": self._cudnn.data_type.DOUBLE}
        if geometry.dtype not in kinds:
            return self._refuse(geometry, f"no cuDNN convolution for {geometry.dtype}")
        try:
            graphs = [self._graph(operation, geometry, kinds[geometry.dtype]) for operation in OPERATIONS]
        except Exception as error:  # cudnnGraphNotSupportedError, or a geometry cuDNN rejects
            return self._refuse(geometry, f"{type(error).__name__}: {error}")
        size = max(graph.get_workspace_size() for graph, _ in graphs)
        if size > self._workspace.shape[0]:
            self._workspace = self._xp.empty(size, dtype=self._xp.uint8)
        return Convolution(self, *graphs)

    def _graph(self, operation, geometry: Geometry, kind):
        """One operation's graph, built: (graph, its (first, second, result) tensors)."""
        cudnn = self._cudnn
        graph = cudnn.pygraph(
            io_data_type=kind, intermediate_data_type=kind, compute_data_type=kind, handle=self._handle
        )
        shapes = {"x": geometry.input_shape, "w": geometry.weight_shape, "y": geometry.output_shape}
        *operands, result = OPERATIONS[operation]
        first, second = (
            graph.tensor(name=name, dim=list(shapes[name]), stride=c_order_strides(shapes[name]), data_type=kind)
            for name in operands
        )
        arguments = {"padding": list(geometry.padding), "stride": list(geometry.stride), "dilation": DILATION}
        if operation == "forward":
            output = graph.conv_fprop(image=first, weight=second, **arguments)
        elif operation == "backward_data":
            output = graph.conv_dgrad(loss=first, filter=second, **arguments)
        else:
            output = graph.conv_wgrad(image=first, loss=second, **arguments)
        shape = list(shapes[result])
        output.set_output(True).set_dim(shape).set_stride(c_order_strides(shape)).set_data_type(kind)
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE, cudnn.numerical_note.DOWN_CONVERT_INPUTS])
        graph.check_support()
        graph.build_plans()
        return graph, (first, second, output)

    def _refuse(self, geometry, reason):
        self.unsupported[geometry] = reason
        warnings.warn(f"cuDNN cannot run the convolution {geometry}: {reason}; it runs as im2col", stacklevel=4)
        return None

    def run(self, graph, tensors, arrays):
        """Execute a built graph on the current stream, its tensors bound to `arrays`."""
        stream = self._current_stream()
        if stream != self._stream:
            self._cudnn.set_stream(handle=self._handle, stream=stream)
            self._stream = stream
        pointers = {tensor: self._pointer(array) for tensor, array in zip(tensors, arrays)}
        graph.execute(pointers, self._pointer(self._workspace), handle=self._handle)


class Convolution:
    """One geometry's three graphs, each writing its result into the array given for it."""

    def __init__(self, graphs: ConvolutionGraphs, forward, backward_data, backward_filter):
        self._graphs = graphs
        self._forward, self._backward_data, self._backward_filter = forward, backward_data, backward_filter

    def forward(self, x, weight, y):
        """y (N, O, OH, OW) = the convolution of x (N, C, H, W) with weight (O, C, kh, kw)."""
        self._graphs.run(*self._forward, (x, weight, y))

    def backward_data(self, grad_y, weight, grad_x):
        """grad_x (N, C, H, W) = dL/dx from grad_y = dL/dy (N, O, OH, OW)."""
        self._graphs.run(*self._backward_data, (grad_y, weight, grad_x))

    def backward_filter(self, x, grad_y, grad_weight):
        """grad_weight (O, C, kh, kw) = dL/dW from x and grad_y = dL/dy."""
        self._graphs.run(*self._backward_filter, (x, grad_y, grad_weight))
