"""The interface every backend implements, with portable fallbacks for the generic array facilities."""

from __future__ import annotations

import numpy as np

from . import special
from .elementwise import Elementwise

ONE_HOT_BLOCK = 2**22  # the most entries of a one-hot block in the portable index_add


class BackendError(RuntimeError):
    """An unknown backend name, or a known one that cannot run on this machine."""


class Generator:
    """Seeded random numbers, drawn on the host with NumPy and moved to the backend.

    Drawing on the host makes the same seed give the same numbers on every backend.
    Backends with a device generator (CuPy) override `Backend.rng` for speed. Made by
    `backend.rng(seed)` (or `diynn.get_backend().rng(seed)`), not directly.

    Args:
        backend: where the numbers drawn land.
        seed: seeds NumPy's default generator; None: unseeded.
    """

    def __init__(self, backend: Backend, seed: int | None):
        self._backend = backend
        self._numpy = np.random.default_rng(seed)

    def normal(self, shape, std=1.0, dtype=None):
        """Samples of N(0, std**2).

        Args:
            shape: the result's shape, a tuple.
            std: the standard deviation.
            dtype: a backend dtype; None (default): float32.

        Returns:
            samples: an array of `shape` and `dtype` on the backend.
        """
        return self._to_backend(self._numpy.normal(0.0, std, size=shape), dtype)

    def uniform(self, low, high, shape, dtype=None):
        """Samples of U[low, high).

        Args:
            low: the lower bound (included).
            high: the upper bound (excluded).
            shape: the result's shape, a tuple.
            dtype: a backend dtype; None (default): float32.

        Returns:
            samples: an array of `shape` and `dtype` on the backend.
        """
        return self._to_backend(self._numpy.uniform(low, high, size=shape), dtype)

    def permutation(self, n: int):
        """A random permutation of range(n).

        Returns:
            permutation: (n,) int64 array on the backend.
        """
        return self._backend.asarray(self._numpy.permutation(n))

    def integers(self, low: int, high: int, shape):
        """Uniform random integers in [low, high).

        Returns:
            integers: an int64 array of `shape` on the backend.
        """
        return self._backend.asarray(self._numpy.integers(low, high, size=shape))

    @property
    def backend(self) -> Backend:
        """Where the numbers drawn land."""
        return self._backend

    def state_dict(self) -> dict:
        """The stream's position (JSON values): `load_state_dict` continues from exactly here."""
        return {"bit_generator": self._numpy.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream from a `state_dict()`.

        Raises:
            ValueError: `state` is not a state of this kind of generator.
        """
        try:
            self._numpy.bit_generator.state = state["bit_generator"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a random generator state of this kind: {error}") from None

    def to(self, backend: Backend) -> Generator:
        """A generator that lands its numbers on `backend`.

        Returns:
            generator: this one's stream where that backend draws on the host too, else a device
                generator seeded from this stream.
        """
        moved = backend.rng(None)
        if type(moved) is Generator:
            moved._numpy = self._numpy
            return moved
        return backend.rng(int(self._numpy.integers(2**62)))

    def _to_backend(self, values, dtype):
        dtype = self._backend.xp.float32 if dtype is None else dtype
        return self._backend.asarray(values.astype(self._backend.numpy_dtype(dtype)), dtype=dtype)


class Backend:
    """An array namespace `xp` on one device, plus the generic facilities the standard lacks:
    conversion, seeded random numbers, synchronisation, im2col / col2im, compiling an elementwise
    kernel, CUDA-graph capture. Nothing here knows of layers, losses or optimisers.

    Subclasses set `name`, `xp` and `device`, and override a facility only where they have
    something faster than the portable fallback written here.
    """

    name: str
    xp = None
    device = None
    ufunc_out = False  # xp's elementwise functions take out= (NumPy): work without temporaries
    fuses_kernels = False  # `elementwise` compiles fused kernels (CuPy)

    @property
    def compiles_kernels(self) -> bool:
        """Whether `compiled` compiles kernels here now (the NumPy backend with the kernels setting
        "compiled"): a flag the ops' selections read, cheaper than compiling to ask."""
        return False

    def asarray(self, values, dtype=None):
        """`values` as a backend array on `self.device`.

        Args:
            values: a NumPy array, nested lists of numbers or a backend array.
            dtype: a backend dtype; None: inferred from `values`.
        """
        return self.xp.asarray(values, dtype=dtype, device=self.device)

    def to_numpy(self, array) -> np.ndarray:
        """A NumPy copy (or view, on the CPU) of a backend array."""
        return np.from_dlpack(array)

    def numpy_dtype(self, dtype) -> np.dtype:
        """The NumPy dtype with the same name as backend dtype `dtype`."""
        return np.dtype(str(self.xp.empty(0, dtype=dtype).dtype).rpartition(".")[2])

    def memory_owner(self, array):
        """The array whose memory `array` uses: itself, or the base of a view, followed to the end
        (NumPy's and CuPy's `base`)."""
        owner = array
        while getattr(owner, "base", None) is not None:
            owner = owner.base
        return owner

    def nbytes(self, array) -> int:
        """The bytes of `array`'s elements (a view's, not its base's)."""
        return int(array.nbytes)

    def rng(self, seed: int | None = None) -> Generator:
        """A seeded random generator whose draws land on this backend."""
        return Generator(self, seed)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    def float_errors_ignored(self):
        """A context manager within which arithmetic that overflows or makes a NaN warns of nothing.

        For code that checks its results itself (and reports where a NaN or an infinity first
        arose, rather than warning at each operation). NumPy's `errstate`: local to the thread and
        context, unlike a warnings filter; it covers the array-API-strict backend (NumPy
        underneath), and CuPy warns of none.

        Returns:
            context: a context manager (`with backend.float_errors_ignored(): ...`).
        """
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")

    def im2col(self, x, kernel: tuple[int, int], stride: tuple[int, int]):
        """Windows of a channel-major, already padded image batch as matrix columns.

        Row (c, i, j) holds x[c, n, oh * sh + i, ow * sw + j] in column (n, oh, ow). Fallback: one
        strided slice per kernel offset (kh * kw copies), stacked.

        Args:
            x: (C, N, H, W), already padded.
            kernel: (kh, kw).
            stride: (sh, sw).

        Returns:
            cols: (C * kh * kw, N * OH * OW), OH = (H - kh) // sh + 1 (OW likewise), of x's dtype.
        """
        xp = self.xp
        (kh, kw), (sh, sw) = kernel, stride
        channels, n, height, width = x.shape
        oh, ow = (height - kh) // sh + 1, (width - kw) // sw + 1
        slices = [
            x[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            for i in range(kh)
            for j in range(kw)
        ]
        return xp.reshape(xp.stack(slices, axis=1), (channels * kh * kw, n * oh * ow))

    def col2im(self, cols, shape, kernel: tuple[int, int], stride: tuple[int, int]):
        """The adjoint of im2col: sums each column entry back onto the pixel it came from.

        Args:
            cols: (C * kh * kw, N * OH * OW).
            shape: the image batch's (C, N, H, W).
            kernel: (kh, kw).
            stride: (sh, sw).

        Returns:
            image: (C, N, H, W) of cols' dtype.
        """
        xp = self.xp
        (kh, kw), (sh, sw) = kernel, stride
        channels, n, height, width = shape
        oh, ow = (height - kh) // sh + 1, (width - kw) // sw + 1
        cols = xp.reshape(cols, (channels, kh, kw, n, oh, ow))
        image = xp.zeros(shape, dtype=cols.dtype, device=self.device)
        for i in range(kh):
            for j in range(kw):
                rows, columns = slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)
                image[:, :, rows, columns] += cols[:, i, j, ...]
        return image

    def matmul(self, a, b):
        """a (M, K) @ b (K, N). The CuPy backend records it in CUDA graphs through a cuBLAS handle
        of its own (backends.cublas); everywhere else it is a @ b."""
        return a @ b

    def erf(self, x):
        """The error function, elementwise, in x's dtype (the array API standard has none).

        The rational approximations of backends.special (about 1e-16 relative in float64) in the
        standard's functions; CuPy's backend calls cupyx.scipy.special.erf.

        Args:
            x: an array of real floating point (float32 or float64).

        Returns:
            erf(x): of x's shape and dtype.
        """
        return special.erf(self.xp, x)

    def index_add(self, target, indices, values) -> None:
        """target[indices[k]] += values[k] along axis 0, in place, where repeated indices add up
        (an indexed assignment would keep one of them): the adjoint of `take(target, indices,
        axis=0)`, a scatter-add.

        Fallback: products of one-hot (V, m) blocks with m of the values' rows at a time (NumPy
        and CuPy override it with their `add.at`).

        Args:
            target: (V, ...), added to in place.
            indices: (M,) integers in [0, V).
            values: (M, ...) of target's dtype, target's trailing shape.

        Returns:
            None: `target` holds the sums.
        """
        xp, rows = self.xp, target.shape[0]
        flat = xp.reshape(values, (values.shape[0], -1))
        block = max(1, ONE_HOT_BLOCK // max(rows, 1))
        total = xp.zeros((rows, flat.shape[1]), dtype=target.dtype, device=self.device)
        for start in range(0, indices.shape[0], block):
            stop = min(start + block, indices.shape[0])
            one_hot = xp.arange(rows, device=self.device)[:, None] == indices[None, start:stop]
            total += xp.astype(one_hot, target.dtype) @ flat[start:stop, ...]
        target += xp.reshape(total, target.shape)

    def library(self, name: str):
        """A vendor library this backend can call ("cudnn": cuDNN's convolution graphs on CuPy, see
        backends.cudnn_graphs), or None where there is none (the caller then runs its portable code)."""
        return None

    def elementwise(self, source: Elementwise):
        """`source` compiled for this backend's device, or None where nothing can compile it
        (the caller then runs its portable array code). Called as kernel(*inputs, *outputs)."""
        return None

    def compiled(self, function, size=None):
        """Kernel `function` (plain loops, see backends.cpu_kernels) compiled for this backend's CPU, or
        None where this backend does not compile Python, the kernels setting is "portable", or the
        work is `size` elements, too few to pay for a parallel launch."""
        return None

    def collective_group(self, size: int, rank: int, share):
        """Collectives on this backend's device arrays among `size` processes.

        Args:
            size: the number of processes.
            rank: this process's rank.
            share: `share(value)` returns rank 0's value on every rank (e.g. an MPI broadcast); it
                hands out the group's id.

        Returns:
            group: with allreduce_sum(array) and broadcast(array) from rank 0 (NCCL on CuPy), or None
                where there are none.
        """
        return None

    def graph(self):
        """A recorder that captures device work once and replays it (CUDA graphs, CuPy only)."""
        raise BackendError(f"CUDA graph capture needs the cupy backend; the active backend is {self.name!r}")

    def __repr__(self) -> str:
        return f"<backend {self.name} on {self.device}>"
