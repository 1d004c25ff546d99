"""NumPy on the CPU, through array-api-compat's standard namespace."""

import array_api_compat.numpy as xp
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = xp
    device = "cpu"

    def __init__(self):
        self._scratch = {}

    def scratch(self, shape, dtype) -> np.ndarray:
        """A reusable work buffer: large temporaries cost more to allocate than to fill."""
        key = (tuple(shape), np.dtype(dtype))
        if key not in self._scratch:
            self._scratch[key] = np.empty(shape, dtype)
        return self._scratch[key]

    def asarray(self, values, dtype=None):
        return np.asarray(values, dtype=dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def numpy_dtype(self, dtype):
        return np.dtype(dtype)

    def scatter_add(self, target, indices, values):
        np.add.at(target, indices, values)
        return target

    def im2col(self, x, kernel, stride):
        (kh, kw), (sh, sw) = kernel, stride
        channels, n, height, width = x.shape
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        oh, ow = windows.shape[2], windows.shape[3]
        # (C, N, OH, OW, kh, kw) view -> (C, kh, kw, N, OH, OW): the one copy is the im2col buffer
        return windows.transpose(0, 4, 5, 1, 2, 3).reshape(channels * kh * kw, n * oh * ow)

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step):
        work = self.scratch(param.shape, param.dtype)
        np.subtract(grad, m, out=work)  # m += (1 - b1)(g - m)
        work *= 1 - beta1
        m += work
        np.multiply(grad, grad, out=work)  # v += (1 - b2)(g^2 - v)
        work -= v
        work *= 1 - beta2
        v += work
        c = (1 - beta2**step) ** 0.5
        np.sqrt(v, out=work)
        work += eps * c
        np.divide(m, work, out=work)
        work *= lr * c / (1 - beta1**step)
        param -= work
