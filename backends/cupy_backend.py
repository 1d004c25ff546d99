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

    def scatter_add(self, target, indices, values):
        import cupyx

        cupyx.scatter_add(target, indices, values)
        return target
