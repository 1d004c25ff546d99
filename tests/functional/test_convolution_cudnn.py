"""The cuDNN path of the convolutions (CuPy + NVIDIA's cuDNN frontend), checked for its glue without
a GPU: the layers run on NumPy with `backend.library("cudnn")` answering the real ConvolutionGraphs
(backends/cudnn_graphs.py) built on a stand-in for the frontend module `cudnn`. The stand-in records
how each graph is built and runs fprop, dgrad and wgrad with its own sliding windows and einsum, so
the layers must give what the portable im2col path gives. On a GPU, the last test runs real cuDNN."""

import numpy as np
import pytest
from conftest import AVAILABLE

import diynn
from diynn.backends.cudnn_graphs import ConvolutionGraphs
from diynn.backends.cupy_backend import _import_library


def _windows(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def _fprop(x, w, y, stride, padding):
    y[...] = np.einsum("nchwij,ocij->nohw", _windows(x, w.shape[2:], stride, padding), w)


def _wgrad(x, dy, dw, stride, padding):
    dw[...] = np.einsum("nchwij,nohw->ocij", _windows(x, dw.shape[2:], stride, padding), dy)


def _dgrad(dy, w, dx, stride, padding):
    """dx (the forward's input shape): the input gradient of the convolution of dx with w."""
    (kh, kw), (sh, sw), (ph, pw) = w.shape[2:], stride, padding
    n, channels, height, width = dx.shape
    full = np.zeros((n, channels, height + 2 * ph, width + 2 * pw), dx.dtype)
    oh, ow = dy.shape[2:]
    for i in range(kh):
        for j in range(kw):
            rows, columns = slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)
            full[:, :, rows, columns] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
    dx[...] = full[:, :, ph : ph + height, pw : pw + width]


class StandInFrontend:
    """The parts of the `cudnn` module (nvidia-cudnn-frontend 1.x) that ConvolutionGraphs uses."""

    class data_type:  # noqa: N801 - the frontend's names
        FLOAT, DOUBLE = "FLOAT", "DOUBLE"

    class heur_mode:  # noqa: N801
        A, FALLBACK = "A", "FALLBACK"

    class numerical_note:  # noqa: N801
        TENSOR_CORE, DOWN_CONVERT_INPUTS = "TENSOR_CORE", "DOWN_CONVERT_INPUTS"

    class cudnnGraphNotSupportedError(RuntimeError):  # noqa: N801, N818
        pass

    def __init__(self, unsupported=()):
        self.unsupported = set(unsupported)  # data types check_support refuses
        self.graphs, self.executed, self.streams = [], [], []

    def create_handle(self):
        return "handle"

    def set_stream(self, handle, stream):
        assert handle == "handle"
        self.streams.append(stream)

    def pygraph(self, io_data_type, intermediate_data_type, compute_data_type, handle):
        assert io_data_type == intermediate_data_type == compute_data_type and handle == "handle"
        graph = StandInGraph(self, io_data_type)
        self.graphs.append(graph)
        return graph


class StandInTensor:
    def __init__(self, name, dim, stride, data_type):
        self.name, self.dim, self.stride, self.data_type = name, dim, stride, data_type
        self.is_output = False

    def set_output(self, value):
        self.is_output = value
        return self

    def set_dim(self, dim):
        self.dim = dim
        return self

    def set_stride(self, stride):
        self.stride = stride
        return self

    def set_data_type(self, data_type):
        self.data_type = data_type
        return self


class StandInGraph:
    WORKSPACE = {"fprop": 16, "dgrad": 48, "wgrad": 32}

    def __init__(self, frontend, data_type):
        self.frontend, self.data_type = frontend, data_type
        self.inputs, self.steps = [], []

    def tensor(self, name, dim, stride, data_type):
        tensor = StandInTensor(name, dim, stride, data_type)
        self.inputs.append(tensor)
        return tensor

    def _operation(self, kind, first, second, padding, stride, dilation):
        assert [first, second] == self.inputs and dilation == [1, 1]
        self.kind, self.padding, self.stride = kind, padding, stride
        self.output = StandInTensor(f"{kind} output", None, None, None)
        return self.output

    def conv_fprop(self, image, weight, padding, stride, dilation):
        return self._operation("fprop", image, weight, padding, stride, dilation)

    def conv_dgrad(self, loss, filter, padding, stride, dilation):  # noqa: A002 - the frontend's name
        return self._operation("dgrad", loss, filter, padding, stride, dilation)

    def conv_wgrad(self, image, loss, padding, stride, dilation):
        return self._operation("wgrad", image, loss, padding, stride, dilation)

    def validate(self):
        self.steps.append("validate")

    def build_operation_graph(self):
        self.steps.append("build_operation_graph")

    def create_execution_plans(self, modes):
        self.steps.append(("create_execution_plans", modes))

    def deselect_numeric_notes(self, notes):
        self.steps.append(("deselect_numeric_notes", notes))

    def check_support(self):
        self.steps.append("check_support")
        if self.data_type in self.frontend.unsupported:
            raise StandInFrontend.cudnnGraphNotSupportedError(f"no engine for {self.kind} in {self.data_type}")

    def build_plans(self):
        self.steps.append("build_plans")

    def get_workspace_size(self):
        return self.WORKSPACE[self.kind]

    def execute(self, pointers, workspace, handle):
        """The pointers are the arrays themselves (the test's pointer function is the identity)."""
        assert handle == "handle" and workspace.dtype == np.uint8 and workspace.size >= self.get_workspace_size()
        assert set(pointers) == {*self.inputs, self.output} and self.output.is_output
        for tensor, array in pointers.items():
            assert list(array.shape) == tensor.dim and array.flags.c_contiguous
            assert [s // array.itemsize for s in array.strides] == tensor.stride
            assert tensor.data_type == {"float32": "FLOAT", "float64": "DOUBLE"}[array.dtype.name]
        first, second, result = pointers[self.inputs[0]], pointers[self.inputs[1]], pointers[self.output]
        run = {"fprop": _fprop, "dgrad": _dgrad, "wgrad": _wgrad}[self.kind]
        run(first, second, result, tuple(self.stride), tuple(self.padding))
        self.frontend.executed.append(self.kind)


def _stand_in_graphs(backend, frontend, stream=lambda: 7):
    return ConvolutionGraphs(frontend, backend.xp, pointer=lambda array: array, current_stream=stream)


@pytest.fixture
def cudnn(monkeypatch):
    """The stand-in frontend, answering `library("cudnn")` of the NumPy backend."""
    frontend = StandInFrontend()
    with diynn.use("numpy") as backend:
        graphs = _stand_in_graphs(backend, frontend)
        monkeypatch.setattr(backend, "library", lambda name: graphs if name == "cudnn" else None)
        yield frontend


def _run(make, x, seed=0):
    """forward, then backward with a random output gradient: (y, dx, dW, db) as float64 arrays."""
    layer = make()
    y = layer(x)
    grad = np.random.default_rng(seed).normal(size=y.shape).astype(x.dtype)
    dx = layer.backward(grad)
    return [np.asarray(a, np.float64) for a in (y, dx, layer.weight.grad, layer.bias.grad)]


def _portable(make, x):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diynn.get_backend(), "library", lambda name: None)
        return _run(make, x)


CASES = {
    "conv 3x3 pad 1": (lambda: diynn.Conv2d(3, 4, 3, padding=1, rng=0), (2, 3, 7, 6)),
    "conv 4x4 stride 2": (lambda: diynn.Conv2d(3, 5, 4, stride=2, padding=1, rng=0), (2, 3, 8, 8)),
    "conv 2x3 stride (2, 1)": (lambda: diynn.Conv2d(2, 3, (2, 3), stride=(2, 1), rng=0), (3, 2, 7, 5)),
    "dilated 3x3 (its sub-images' plain convolutions)": (
        lambda: diynn.Conv2d(3, 4, 3, padding=2, dilation=2, rng=0),
        (2, 3, 9, 8),
    ),
    "transposed 4x4 stride 2": (lambda: diynn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, rng=0), (2, 3, 4, 5)),
    "transposed output padding": (
        lambda: diynn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, rng=0),
        (2, 2, 3, 4),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cudnn_path_matches_the_portable_path(cudnn, case):
    make, shape = CASES[case]
    x = np.random.default_rng(1).normal(size=shape)
    with_cudnn = _run(lambda: make().astype(np.float64), x)
    assert sorted(cudnn.executed) == ["dgrad", "fprop", "wgrad"]
    portable = _portable(lambda: make().astype(np.float64), x)
    for name, ours, expected in zip(("y", "dx", "dW", "db"), with_cudnn, portable):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_transposed_convolution_runs_the_same_graphs_in_another_order(cudnn):
    make, shape = CASES["transposed 4x4 stride 2"]
    _run(make, np.ones(shape, np.float32))
    assert cudnn.executed == ["dgrad", "wgrad", "fprop"]  # forward; weight, then input gradient


def test_a_strided_input_and_output_gradient_are_made_contiguous(cudnn):
    x = np.random.default_rng(2).normal(size=(2, 5, 6, 3)).transpose(0, 3, 1, 2)  # (2, 3, 5, 6), not C order
    make = lambda: diynn.Conv2d(3, 4, 3, padding=1, rng=0).astype(np.float64)  # noqa: E731
    for name, ours, expected in zip(("y", "dx", "dW", "db"), _run(make, x), _portable(make, x)):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_first_layer_skips_the_input_gradient(cudnn):
    layer = diynn.Conv2d(1, 2, 3, rng=0)
    y = layer(np.ones((1, 1, 5, 5), np.float32))
    assert layer.backward(np.ones_like(y), input_grad=False) is None
    assert cudnn.executed == ["fprop", "wgrad"]


def test_graphs_are_built_once_per_geometry_with_fp32_math(cudnn):
    layer = diynn.Conv2d(3, 4, 4, stride=2, padding=1, rng=0)
    for batch in (2, 2, 5):
        layer(np.ones((batch, 3, 8, 8), np.float32))
    assert len(cudnn.graphs) == 6  # fprop, dgrad, wgrad for batch 2, then for batch 5
    fprop, dgrad, wgrad = cudnn.graphs[:3]
    assert (fprop.kind, dgrad.kind, wgrad.kind) == ("fprop", "dgrad", "wgrad")
    assert [t.dim for t in (*fprop.inputs, fprop.output)] == [[2, 3, 8, 8], [4, 3, 4, 4], [2, 4, 4, 4]]
    assert [t.dim for t in (*dgrad.inputs, dgrad.output)] == [[2, 4, 4, 4], [4, 3, 4, 4], [2, 3, 8, 8]]
    assert [t.dim for t in (*wgrad.inputs, wgrad.output)] == [[2, 3, 8, 8], [2, 4, 4, 4], [4, 3, 4, 4]]
    assert fprop.inputs[0].stride == [192, 64, 8, 1] and fprop.output.stride == [64, 16, 4, 1]
    assert (fprop.padding, fprop.stride, fprop.data_type) == ([1, 1], [2, 2], "FLOAT")
    assert fprop.steps == [
        "validate",
        "build_operation_graph",
        ("create_execution_plans", ["A", "FALLBACK"]),
        ("deselect_numeric_notes", ["TENSOR_CORE", "DOWN_CONVERT_INPUTS"]),  # no TF32
        "check_support",
        "build_plans",
    ]
    assert cudnn.streams == [7]  # set once, for the stream in use


def test_each_graph_runs_on_the_current_stream():
    frontend, streams = StandInFrontend(), iter([3, 3, 9])
    with diynn.use("numpy") as backend:
        graphs = _stand_in_graphs(backend, frontend, stream=lambda: next(streams))
        convolution = graphs.convolution((1, 1, 3, 3), (1, 1, 2, 2), (1, 1, 2, 2), np.dtype("float32"), (0, 0), (1, 1))
        x, w, y = (
            np.ones((1, 1, 3, 3), np.float32),
            np.ones((1, 1, 2, 2), np.float32),
            np.empty((1, 1, 2, 2), np.float32),
        )
        for _ in range(3):
            convolution.forward(x, w, y)
    assert frontend.streams == [3, 9] and y.tolist() == [[[[4.0, 4.0], [4.0, 4.0]]]]


def test_a_geometry_cudnn_refuses_runs_as_im2col_and_says_why(monkeypatch):
    frontend = StandInFrontend(unsupported={"DOUBLE"})
    make, shape = CASES["conv 4x4 stride 2"]
    x = np.random.default_rng(1).normal(size=shape)
    with diynn.use("numpy") as backend:
        graphs = _stand_in_graphs(backend, frontend)
        monkeypatch.setattr(backend, "library", lambda name: graphs)
        with pytest.warns(UserWarning, match="cudnnGraphNotSupportedError: no engine for fprop in DOUBLE"):
            ours = _run(lambda: make().astype(np.float64), x)
        expected = _portable(lambda: make().astype(np.float64), x)
    assert frontend.executed == [] and len(graphs.unsupported) == 1
    for name, a, b in zip(("y", "dx", "dW", "db"), ours, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)


def test_without_the_frontend_the_cupy_backend_warns_and_uses_im2col(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cudnn", None)  # `import cudnn` raises ImportError
    with pytest.warns(UserWarning, match=r"cuDNN is unavailable \(ModuleNotFoundError.*pip install 'diynn\[gpu\]'"):
        assert _import_library(object(), "cudnn") is None
    assert _import_library(object(), "cublas") is None


@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_real_cudnn_matches_the_im2col_path_on_the_gpu(case, dtype):
    make, shape = CASES[case]
    with diynn.use("cupy") as backend:
        if backend.library("cudnn") is None:
            pytest.skip("no cuDNN frontend here (pip install 'diynn[gpu]'); convolutions use im2col")
        x = backend.asarray(np.random.default_rng(1).normal(size=shape).astype(dtype))

        def run():
            layer = make().astype(getattr(backend.xp, dtype))
            y = layer(x)
            dx = layer.backward(backend.asarray(np.random.default_rng(0).normal(size=y.shape).astype(dtype)))
            return [backend.to_numpy(a) for a in (y, dx, layer.weight.grad, layer.bias.grad)]

        with_cudnn = run()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(backend, "library", lambda name: None)
            portable = run()
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}
    for name, ours, expected in zip(("y", "dx", "dW", "db"), with_cudnn, portable):
        np.testing.assert_allclose(ours, expected, **tolerance, err_msg=name)
