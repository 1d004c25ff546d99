"""NumPy on the CPU, through array-api-compat's standard namespace."""

import array_api_compat.numpy as xp
import numpy as np

from .base import Backend
from .cpu_kernels import SMALLEST_PARALLEL_WORK, compile_kernel, kernels
from .host_memory import keep_freed_memory


class NumpyBackend(Backend):
    name = "numpy"
    xp = xp
    device = "cpu"
    ufunc_out = True

    def __init__(self):
        super().__init__()
        keep_freed_memory()  # each step reuses the last one's pages (see host_memory)

    def asarray(self, values, dtype=None):
        return np.asarray(values, dtype=dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def numpy_dtype(self, dtype):
        return np.dtype(dtype)

    @property
    def compiles_kernels(self):
        return kernels() == "compiled"

    def compiled(self, function, size=None):
        return None if size is not None and size < SMALLEST_PARALLEL_WORK else compile_kernel(function)

    def index_add(self, target, indices, values):
        np.add.at(target, indices, values)  # 6 ms for 6400 rows of 64 into (10000, 64): as torch's index_add_

    def im2col(self, x, kernel, stride):
        (kh, kw), (sh, sw) = kernel, stride
        channels, n, height, width = x.shape
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        oh, ow = windows.shape[2], windows.shape[3]
        # (C, N, OH, OW, kh, kw) view -> (C, kh, kw, N, OH, OW): the one copy is the im2col buffer
        return windows.transpose(0, 4, 5, 1, 2, 3).reshape(channels * kh * kw, n * oh * ow)
