"""CuPy on the current CUDA device, through array-api-compat's standard namespace."""

import contextlib

from . import cuda_kernels
from .base import Backend, Generator


class CupyGenerator(Generator):
    """Random numbers drawn on the GPU, so dropout masks and shuffles need no host transfer."""

    def __init__(self, backend, seed):
        import cupy

        self._backend = backend
        self._cupy = cupy.random.default_rng(seed)

    def normal(self, shape, std=1.0, dtype=None):
        dtype = self._backend.xp.float32 if dtype is None else dtype
        return (self._cupy.standard_normal(shape, dtype=dtype) * std).astype(dtype, copy=False)

    def uniform(self, low, high, shape, dtype=None):
        dtype = self._backend.xp.float32 if dtype is None else dtype
        return (low + (high - low) * self._cupy.random(shape, dtype=dtype)).astype(dtype, copy=False)

    def permutation(self, n):
        return self._cupy.permutation(n)

    def integers(self, low, high, shape):
        return self._cupy.integers(low, high, size=shape)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self):
        import array_api_compat.cupy as xp
        import cupy

        self._cupy = cupy
        self.xp = xp
        self.device = cupy.cuda.Device()

    @property
    def device_name(self) -> str:
        props = self._cupy.cuda.runtime.getDeviceProperties(self.device.id)
        return props["name"].decode()

    def asarray(self, values, dtype=None):
        return self._cupy.asarray(values, dtype=dtype)

    def to_numpy(self, array):
        return self._cupy.asnumpy(array)

    def numpy_dtype(self, dtype):
        import numpy as np

        return np.dtype(dtype)

    def rng(self, seed=None):
        return CupyGenerator(self, seed)

    def synchronize(self):
        self._cupy.cuda.get_current_stream().synchronize()

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step):
        c = (1 - beta2**step) ** 0.5
        step_size, eps = _scalar(lr * c / (1 - beta1**step), param.dtype), _scalar(eps * c, param.dtype)
        _kernel(cuda_kernels.ADAM)(grad, step_size, beta1, beta2, eps, param, m, v)

    def sgd_update(self, param, grad, buffer=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        lr = _scalar(lr, param.dtype)
        if buffer is None:
            _kernel(cuda_kernels.SGD)(grad, lr, weight_decay, param)
        else:
            _kernel(cuda_kernels.SGD_MOMENTUM)(grad, lr, momentum, weight_decay, int(nesterov), param, buffer)

    def relu_backward(self, y, grad_output):
        return _kernel(cuda_kernels.RELU_BACKWARD)(y, grad_output)

    def tanh_backward(self, y, grad_output):
        return _kernel(cuda_kernels.TANH_BACKWARD)(y, grad_output)

    def sigmoid_backward(self, y, grad_output):
        return _kernel(cuda_kernels.SIGMOID_BACKWARD)(y, grad_output)

    def softmax_cross_entropy(self, logits, labels):
        cupy = self._cupy
        n, classes = logits.shape
        logits, labels = cupy.ascontiguousarray(logits), cupy.ascontiguousarray(labels)
        losses = cupy.empty(n, dtype=logits.dtype)
        grad = cupy.empty_like(logits)
        _kernel(cuda_kernels.SOFTMAX_CROSS_ENTROPY)(logits, labels, classes, 1.0 / n, losses, grad)
        return cupy.mean(losses), grad

    def graph(self):
        return CudaGraph(self._cupy)

    def scatter_add(self, target, indices, values):
        import cupyx

        cupyx.scatter_add(target, indices, values)
        return target


class CudaGraph:
    """Device work recorded once from Python and replayed with a single launch.

    `run(fn)` runs fn eagerly on the graph's own stream (the warm-up: kernels get compiled and
    state allocated on that stream); `capture(fn)` records fn without running it, allocating
    from a private memory pool, so the addresses the recording uses are never handed to other
    arrays; `replay()` launches the recording. Each call is ordered after the work queued on
    the current stream and before the work queued on it afterwards.
    """

    def __init__(self, cupy):
        self._cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()
        self._graph = None

    @contextlib.contextmanager
    def _on_own_stream(self):
        current = self._cupy.cuda.get_current_stream()
        self.stream.wait_event(current.record())
        try:
            with self.stream:
                yield
        finally:
            current.wait_event(self.stream.record())

    def run(self, function):
        with self._on_own_stream():
            return function()

    def capture(self, function):
        with self._on_own_stream(), self._cupy.cuda.using_allocator(self.pool.malloc):
            self.stream.begin_capture()
            try:
                result = function()
            except BaseException:
                self.stream.end_capture()
                raise
            self._graph = self.stream.end_capture()
        return result

    def replay(self):
        if self._graph is None:
            raise RuntimeError("replay() before capture(): nothing has been recorded")
        with self._on_own_stream():
            self._graph.launch(stream=self.stream)


_kernels = {}


def _scalar(value, dtype):
    """A kernel's scalar argument: a Python number as is; a 0-d device array (what a recorded
    CUDA graph reads) cast to the kernel's element type, as ElementwiseKernel requires."""
    return value.astype(dtype, copy=False) if hasattr(value, "astype") else value


def _kernel(source: cuda_kernels.Elementwise):
    """The compiled cupy.ElementwiseKernel for `source` (compiled per dtype on first launch)."""
    if source.name not in _kernels:
        import cupy

        _kernels[source.name] = cupy.ElementwiseKernel(*source)
    return _kernels[source.name]
