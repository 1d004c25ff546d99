"""CuPy on the current CUDA device, through array-api-compat's standard namespace."""

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
        _adam_kernel()(grad, lr * c / (1 - beta1**step), beta1, beta2, eps * c, param, m, v)

    def scatter_add(self, target, indices, values):
        import cupyx

        cupyx.scatter_add(target, indices, values)
        return target


_kernels = {}


def _adam_kernel():
    """One fused elementwise kernel for the whole Adam step (one launch instead of about ten)."""
    if "adam" not in _kernels:
        import cupy

        _kernels["adam"] = cupy.ElementwiseKernel(
            "T g, T step_size, T beta1, T beta2, T eps",
            "T p, T m, T v",
            """
            m += (1 - beta1) * (g - m);
            v += (1 - beta2) * (g * g - v);
            p -= step_size * m / (sqrt(v) + eps);
            """,
            "diynn_adam",
        )
    return _kernels["adam"]
