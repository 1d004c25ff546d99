"""CuPy on the current CUDA device, through array-api-compat's standard namespace."""

import contextlib
import warnings

from .base import Backend, BackendError, Generator


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

    def to(self, backend):
        return backend.rng(int(self._cupy.integers(0, 2**62)))

    def permutation(self, n):
        # cupy.random.Generator has no permutation (CuPy 14): sort n uniform draws instead
        return self._cupy.random(n).argsort()

    def integers(self, low, high, shape):
        return self._cupy.integers(low, high, size=shape)

    def state_dict(self):
        raise BackendError(
            "the state of CuPy's device generator cannot be saved (CuPy exposes none): checkpoints "
            "that must resume bit for bit need generators on the host (Generator)"
        )


class CupyBackend(Backend):
    name = "cupy"
    fuses_kernels = True

    def __init__(self):
        import array_api_compat.cupy as xp
        import cupy

        self._cupy = cupy
        self.xp = xp
        self.device = cupy.cuda.Device()
        self._kernels = {}
        self._libraries = {}
        self._cublas = None  # our own cuBLAS handle (backends.cublas), made by the first recording
        self._recording = False

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

    def erf(self, x):
        from cupyx.scipy.special import erf

        return erf(x)

    def index_add(self, target, indices, values):
        self._cupy.add.at(target, indices, values)

    def library(self, name):
        if name not in self._libraries:
            self._libraries[name] = _import_library(self, name)
        return self._libraries[name]

    def elementwise(self, source):
        if source.name not in self._kernels:
            self._kernels[source.name] = CompiledKernel(self._cupy, source)
        return self._kernels[source.name]

    def graph(self):
        return CudaGraph(self._cupy, self._products_while_recording)

    def matmul(self, a, b):
        return self._cublas.matmul(a, b) if self._recording else a @ b

    @contextlib.contextmanager
    def _products_while_recording(self):
        """Within the block (a CUDA graph's recording), `matmul` calls cuBLAS on our own handle,
        made (with its workspace) before the recording starts."""
        if self._cublas is None:
            from .cublas import CublasProducts, load_cublas

            self._cupy.cuda.device.get_cublas_handle()  # CuPy loads its cuBLAS: load_cublas finds it by name
            stream = self._cupy.cuda.get_current_stream
            self._cublas = CublasProducts(load_cublas(), self.xp, device_pointer, lambda: stream().ptr)
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def collective_group(self, size, rank, share):
        try:
            from cupy.cuda import nccl
        except ImportError:  # a CuPy built without NCCL
            return None
        cuda = self._cupy.cuda
        cuda.Device(rank % cuda.runtime.getDeviceCount()).use()  # one GPU per rank on each machine
        self.device = cuda.Device()
        unique_id = share(nccl.get_unique_id() if rank == 0 else None)
        return NcclGroup(self._cupy, nccl, nccl.NcclCommunicator(size, unique_id, rank))


class NcclGroup:
    """NCCL collectives on float CuPy arrays, on the current stream; each returns the result array."""

    def __init__(self, cupy, nccl, communicator):
        self._cupy, self._nccl, self._communicator = cupy, nccl, communicator
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def allreduce_sum(self, array):
        array = self._cupy.ascontiguousarray(array)
        stream = self._cupy.cuda.get_current_stream().ptr
        kind = self._types[str(array.dtype)]
        self._communicator.allReduce(array.data.ptr, array.data.ptr, array.size, kind, self._nccl.NCCL_SUM, stream)
        return array

    def broadcast(self, array):
        array = self._cupy.ascontiguousarray(array)
        stream = self._cupy.cuda.get_current_stream().ptr
        self._communicator.bcast(array.data.ptr, array.size, self._types[str(array.dtype)], 0, stream)
        return array


class CudaGraph:
    """Device work recorded once from Python and replayed with a single launch.

    `run(fn)` runs fn eagerly on the graph's own stream (the warm-up: kernels get compiled and
    state allocated on that stream); `capture(fn)` records fn without running it, allocating
    from a private memory pool, so the addresses the recording uses are never handed to other
    arrays; `replay()` launches the recording. Each call is ordered after the work queued on
    the current stream and before the work queued on it afterwards.
    """

    def __init__(self, cupy, products=contextlib.nullcontext):
        """products(): a context within which the recorded work's matrix products are recordable
        (the backend's own cuBLAS handle), entered before the recording starts."""
        self._cupy, self._products = cupy, products
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
        with self._on_own_stream(), self._products(), self._cupy.cuda.using_allocator(self.pool.malloc):
            self.stream.begin_capture()
            try:
                result = function()
            except NotImplementedError as error:  # CuPy's refusal, e.g. of its own cuBLAS calls
                self.stream.end_capture()
                raise BackendError(
                    f"CuPy {self._cupy.__version__} cannot record this work in a CUDA graph ({error}); "
                    "the backend's matmul records products through its own cuBLAS handle, but this "
                    "work calls a library CuPy refuses while capturing, so run it eagerly instead"
                ) from error
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


def _import_library(backend, name):
    """cuDNN's convolution graphs ("cudnn": NVIDIA's cuDNN frontend, with the cuDNN library from
    NVIDIA's wheel), or None, with a warning saying why, where they cannot be loaded."""
    if name != "cudnn":
        return None
    try:
        import cudnn  # nvidia-cudnn-frontend: loads libcudnn on import

        from .cudnn_graphs import ConvolutionGraphs

        cupy = backend._cupy
        return ConvolutionGraphs(cudnn, backend.xp, device_pointer, lambda: cupy.cuda.get_current_stream().ptr)
    except Exception as error:  # not installed, no libcudnn, or a CUDA error creating the handle
        warnings.warn(
            f"cuDNN is unavailable ({type(error).__name__}: {error}); convolutions run as im2col + GEMM. "
            "Install it with the gpu extras: pip install 'diynn[gpu]' (or 'diynn[gpu-cuda13]')",
            stacklevel=3,
        )
        return None


def device_pointer(array) -> int:
    """The device address of a CuPy array's first element."""
    return array.data.ptr


class CompiledKernel:
    """A `cupy.ElementwiseKernel` (compiled per dtype on first launch), called as
    kernel(*inputs, *outputs). Inputs are made contiguous (raw arrays are indexed by hand);
    0-d arrays among the scalars are cast to the dtype of the first array argument, as
    ElementwiseKernel wants one type per type name."""

    def __init__(self, cupy, source):
        self._cupy = cupy
        self._kernel = cupy.ElementwiseKernel(*source)
        self._inputs = len(source.in_params.split(","))

    def __call__(self, *arguments):
        cupy = self._cupy
        arrays = [value for value in arguments if isinstance(value, cupy.ndarray) and value.ndim > 0]
        dtype = arrays[0].dtype if arrays else None
        prepared = []
        for position, value in enumerate(arguments):
            if isinstance(value, cupy.ndarray):
                if value.ndim == 0 and dtype is not None:
                    value = value.astype(dtype, copy=False)
                elif position < self._inputs:
                    value = cupy.ascontiguousarray(value)
            prepared.append(value)
        return self._kernel(*prepared)
