"""The interface every backend implements, with portable fallbacks for the extension ops."""

from __future__ import annotations

import numpy as np


class BackendError(RuntimeError):
    """An unknown backend name, or a known one that cannot run on this machine."""


class Generator:
    """Seeded random numbers, drawn on the host with NumPy and moved to the backend.

    Drawing on the host makes the same seed give the same numbers on every backend.
    Backends with a device generator (CuPy) override `Backend.rng` for speed.
    """

    def __init__(self, backend: Backend, seed: int | None):
        self._backend = backend
        self._numpy = np.random.default_rng(seed)

    def normal(self, shape, std=1.0, dtype=None):
        """Samples of N(0, std**2), `shape`, float32 unless `dtype` says otherwise."""
        return self._to_backend(self._numpy.normal(0.0, std, size=shape), dtype)

    def uniform(self, low, high, shape, dtype=None):
        """Samples of U[low, high), `shape`, float32 unless `dtype` says otherwise."""
        return self._to_backend(self._numpy.uniform(low, high, size=shape), dtype)

    def permutation(self, n: int):
        """A random permutation of range(n), int64 array on the backend."""
        return self._backend.asarray(self._numpy.permutation(n))

    def integers(self, low: int, high: int, shape):
        """Integers in [low, high), int64 array on the backend."""
        return self._backend.asarray(self._numpy.integers(low, high, size=shape))

    def _to_backend(self, values, dtype):
        dtype = self._backend.xp.float32 if dtype is None else dtype
        return self._backend.asarray(values.astype(self._backend.numpy_dtype(dtype)), dtype=dtype)


class Backend:
    """An array namespace `xp` on one device, plus the few ops the array API standard lacks.

    Subclasses set `name`, `xp` and `device`, and override an extension op only where they
    have something faster than the portable fallback written here.
    """

    name: str
    xp = None
    device = None

    def asarray(self, values, dtype=None):
        """`values` (NumPy array, list, backend array) as a backend array on `self.device`."""
        return self.xp.asarray(values, dtype=dtype, device=self.device)

    def to_numpy(self, array) -> np.ndarray:
        """A NumPy copy (or view, on the CPU) of a backend array."""
        return np.from_dlpack(array)

    def numpy_dtype(self, dtype) -> np.dtype:
        """The NumPy dtype with the same name as backend dtype `dtype`."""
        return np.dtype(str(self.xp.empty(0, dtype=dtype).dtype).rpartition(".")[2])

    def rng(self, seed: int | None = None) -> Generator:
        """A seeded random generator whose draws land on this backend."""
        return Generator(self, seed)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    def scatter_add(self, target, indices, values):
        """target[indices[i]] += values[i] along axis 0, repeated indices summed; in place.

        target: (M, ...), indices: (K,) integer, values: (K, ...). Returns target.
        Fallback: a one-hot matrix product, (M, K) @ (K, ...), portable to any namespace.
        """
        xp = self.xp
        rows = xp.arange(target.shape[0], device=self.device)
        one_hot = xp.astype(rows[:, None] == indices[None, :], values.dtype)
        flat = xp.reshape(values, (values.shape[0], -1))
        target += xp.reshape(one_hot @ flat, target.shape)
        return target

    def im2col(self, x, kernel: tuple[int, int], stride: tuple[int, int]):
        """Windows of a channel-major, already padded image batch as matrix columns.

        x: (C, N, H, W) -> cols: (C * kh * kw, N * OH * OW), OH = (H - kh) // sh + 1 (same for W);
        row (c, i, j) holds x[c, n, oh * sh + i, ow * sw + j] in column (n, oh, ow).
        Fallback: one strided slice per kernel offset (kh * kw copies), stacked.
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

        cols: (C * kh * kw, N * OH * OW) -> (C, N, H, W) with `shape` = (C, N, H, W).
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

    def relu_backward(self, y, grad_output):
        """d loss / d x of y = max(x, 0), from its output y: grad_output where y > 0, else 0."""
        return grad_output * self.xp.astype(y > 0, grad_output.dtype)

    def tanh_backward(self, y, grad_output):
        """d loss / d x of y = tanh(x), from its output y: grad_output (1 - y^2)."""
        return grad_output * (1 - y * y)

    def sigmoid_backward(self, y, grad_output):
        """d loss / d x of y = sigmoid(x), from its output y: grad_output y (1 - y)."""
        return grad_output * y * (1 - y)

    def softmax_cross_entropy(self, logits, labels):
        """Mean softmax cross-entropy of logits (N, C) against integer labels (N,), and its gradient.

        Returns (loss, grad) as `soft_cross_entropy` does for one-hot targets. A label outside
        [0, C) raises ValueError here (the check reads one number on the host); fused device
        kernels return NaN instead.
        """
        xp = self.xp
        n, classes = logits.shape
        one_hot = xp.astype(labels[:, None] == xp.arange(classes, device=labels.device), logits.dtype)
        if float(xp.sum(one_hot)) != n:  # a row without its label
            bad = labels[(labels < 0) | (labels >= classes)]
            raise ValueError(f"class labels must be in [0, {classes}) for {classes} logits, got {int(bad[0])}")
        return self.soft_cross_entropy(logits, one_hot)

    def soft_cross_entropy(self, logits, target):
        """Mean softmax cross-entropy of logits (N, C) against class probabilities target (N, C).

        Returns (loss, grad): loss a 0-d array, mean over rows of -sum_j t_j log softmax(z)_j;
        grad (N, C) = (softmax(z) - t) / N.
        """
        xp = self.xp
        n = logits.shape[0]
        shifted = logits - xp.max(logits, axis=1, keepdims=True)  # log-sum-exp shift: no overflow
        p = xp.exp(shifted)
        total = xp.sum(p, axis=1, keepdims=True)
        p /= total
        loss = xp.sum(target * (xp.log(total) - shifted)) / n  # -log softmax(z) = log(total) - shifted
        p -= target
        p /= n
        return loss, p

    def sgd_update(self, param, grad, buffer=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        """One SGD step in place (torch.optim.SGD's formula): d = g + wd p;
        buffer <- momentum buffer + d;  p <- p - lr (d + momentum buffer if nesterov else buffer).
        A buffer of zeros gives torch's first step (buffer = d). Without momentum (buffer None):
        p <- p - lr d."""
        d = grad + weight_decay * param if weight_decay else grad
        if buffer is None:
            param -= lr * d
            return
        buffer *= momentum
        buffer += d
        param -= lr * (d + momentum * buffer if nesterov else buffer)

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step):
        """One Adam step, all arrays of one shape, updated in place:
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
        param <- param - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).
        Written here as m / (sqrt(v) + eps c) scaled by lr c / (1 - b1^t), c = sqrt(1 - b2^t)."""
        xp = self.xp
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * (grad * grad)
        c = (1 - beta2**step) ** 0.5
        denominator = xp.sqrt(v)
        denominator += eps * c
        param -= (lr * c / (1 - beta1**step)) * (m / denominator)

    def graph(self):
        """A recorder that captures device work once and replays it (CUDA graphs, CuPy only)."""
        raise BackendError(f"CUDA graph capture needs the cupy backend; the active backend is {self.name!r}")

    def __repr__(self) -> str:
        return f"<backend {self.name} on {self.device}>"
