"""NumPy on the CPU, through array-api-compat's standard namespace."""

import array_api_compat.numpy as xp
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = xp
    device = "cpu"

    def asarray(self, values, dtype=None):
        return np.asarray(values, dtype=dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def numpy_dtype(self, dtype):
        return np.dtype(dtype)

    def scatter_add(self, target, indices, values):
        np.add.at(target, indices, values)
        return target
