"""Data augmentation of image batches (N, C, H, W) on the active backend, for `Trainer.fit(augment=...)`."""

from __future__ import annotations

import math

from . import arguments
from .backends import backend_of
from .init import as_generator, following


class RandomShift:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], filling with zeros.

    (The same as a random crop of the image padded by max_shift.) Written as two batched products
    with one-hot shift matrices, y = S_dy x S_dx^T, so it runs unchanged on every backend.

    Shapes: called on x (N, C, H, W) -> y of x's shape and dtype.

    Args:
        max_shift: the largest shift in pixels, >= 0.
        rng: seed or Generator for the shifts.
    """

    def __init__(self, max_shift: int = 2, rng=None):
        self.max_shift = arguments.integer("max_shift", max_shift, minimum=0)
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        n, _, height, width = x.shape
        dy = self.rng.integers(-self.max_shift, self.max_shift + 1, (n,))
        dx = self.rng.integers(-self.max_shift, self.max_shift + 1, (n,))
        rows = _shift_matrices(dy, height, x.dtype)  # (N, 1, H, H)
        columns = _shift_matrices(dx, width, x.dtype)
        return rows @ x @ xp.permute_dims(columns, (0, 1, 3, 2))


class RandomResizedCrop:
    """Crop a random box of each image and resize it back to the full size (SimCLR's main augmentation).

    Bilinear resampling is linear in the image, so it is two batched products as in RandomShift,
    y = R x C^T, with R[n, i, j] = max(0, 1 - |s_n(i) - j|): the triangle weights of source row
    s_n(i) = top_n + (i + 1/2) h_n / H - 1/2 (and likewise for the columns).

    Shapes: called on x (N, C, H, W) -> y of x's shape and dtype.

    Args:
        scale: (min, max) of the fraction of the image's area the box covers, in (0, 1].
        ratio: (min, max) of the box's height/width ratio, relative to the image's (drawn
            log-uniformly).
        rng: seed or Generator for the boxes.
    """

    def __init__(self, scale=(0.4, 1.0), ratio=(3 / 4, 4 / 3), rng=None):
        self.scale = _range("scale", scale, high=1, low_open=True)
        self.ratio = _range("ratio", ratio, low_open=True)
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        n, _, height, width = x.shape
        area = self.rng.uniform(*self.scale, (n,), dtype=x.dtype)
        aspect = xp.exp(self.rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), (n,), dtype=x.dtype))
        box_h = xp.clip(xp.sqrt(area * aspect), 0, 1) * height  # fractional sizes: resampling needs no rounding
        box_w = xp.clip(xp.sqrt(area / aspect), 0, 1) * width
        top = self.rng.uniform(0.0, 1.0, (n,), dtype=x.dtype) * (height - box_h)
        left = self.rng.uniform(0.0, 1.0, (n,), dtype=x.dtype) * (width - box_w)
        rows = _resampling_matrices(top, box_h, height, x.dtype)  # (N, 1, H, H)
        columns = _resampling_matrices(left, box_w, width, x.dtype)
        return rows @ x @ xp.permute_dims(columns, (0, 1, 3, 2))


class RandomHorizontalFlip:
    """Mirror each image left-right with probability p (for data without a handedness, e.g. clothes).

    Shapes: called on x (N, C, H, W) -> y of x's shape and dtype.

    Args:
        p: the probability of a flip, in [0, 1].
        rng: seed or Generator for the draws.
    """

    def __init__(self, p: float = 0.5, rng=None):
        self.p = arguments.real("p", p, low=0, high=1)
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        flip = self.rng.uniform(0.0, 1.0, (x.shape[0],), dtype=x.dtype) < self.p
        return xp.where(flip[:, None, None, None], xp.flip(x, axis=3), x)


class RandomErasing:
    """With probability p, set a random rectangle of each image to `value` (Zhong et al. 2020).

    The rectangle is drawn per image and built as one mask from aranges, so it runs on every backend.

    Shapes: called on x (N, C, H, W) -> y of x's shape and dtype.

    Args:
        p: the probability that an image gets a rectangle, in [0, 1].
        scale: (min, max) of the fraction of the image's area the rectangle covers, in [0, 1].
        ratio: (min, max) of its height/width ratio (drawn log-uniformly).
        value: what the rectangle is filled with.
        rng: seed or Generator for the draws.
    """

    def __init__(self, p: float = 0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3), value: float = 0.0, rng=None):
        self.p = arguments.real("p", p, low=0, high=1)
        self.scale = _range("scale", scale, high=1)
        self.ratio = _range("ratio", ratio, low_open=True)
        self.value = arguments.real("value", value)
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        n, _, height, width = x.shape
        area = self.rng.uniform(*self.scale, (n,), dtype=x.dtype) * (height * width)
        aspect = xp.exp(self.rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), (n,), dtype=x.dtype))
        box_h = xp.clip(xp.round(xp.sqrt(area * aspect)), 1, height)
        box_w = xp.clip(xp.round(xp.sqrt(area / aspect)), 1, width)
        top = xp.floor(self.rng.uniform(0.0, 1.0, (n,), dtype=x.dtype) * (height - box_h + 1))
        left = xp.floor(self.rng.uniform(0.0, 1.0, (n,), dtype=x.dtype) * (width - box_w + 1))
        chosen = self.rng.uniform(0.0, 1.0, (n,), dtype=x.dtype) < self.p
        rows = xp.astype(xp.arange(height, device=x.device), x.dtype)[None, :]
        columns = xp.astype(xp.arange(width, device=x.device), x.dtype)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # (N, H)
        in_columns = (columns >= left[:, None]) & (columns < (left + box_w)[:, None])  # (N, W)
        mask = in_rows[:, :, None] & in_columns[:, None, :] & chosen[:, None, None]
        return xp.where(mask[:, None, :, :], xp.asarray(self.value, dtype=x.dtype, device=x.device), x)


class GaussianNoise:
    """x + N(0, std^2) per pixel, clipped to [0, 1] when `clip` (images).

    Shapes: called on x of any shape -> y of x's shape and dtype.

    Args:
        std: the noise's standard deviation, >= 0.
        clip: clip the result to [0, 1].
        rng: seed or Generator for the noise.
    """

    def __init__(self, std: float = 0.1, clip: bool = True, rng=None):
        self.std = arguments.real("std", std, low=0)
        self.clip = bool(clip)
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        noisy = x + self.rng.normal(tuple(x.shape), std=self.std, dtype=x.dtype)
        return xp.clip(noisy, 0.0, 1.0) if self.clip else noisy


class RandomBrightnessContrast:
    """With probability p per image, y = clip((x - m) c + m + b, 0, 1), m the image's mean.

    The grey-image part of SimCLR's colour distortion: without it, two views of an image match by
    their grey levels alone.

    Shapes: called on x (N, ...) -> y of x's shape and dtype.

    Args:
        brightness: b ~ U[-brightness, brightness], brightness >= 0.
        contrast: c ~ U[1 - contrast, 1 + contrast], contrast in [0, 1].
        p: the probability that an image is changed, in [0, 1].
        rng: seed or Generator for the draws.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.4, p: float = 0.8, rng=None):
        self.brightness = arguments.real("brightness", brightness, low=0)
        self.contrast = arguments.real("contrast", contrast, low=0, high=1)
        self.p = arguments.real("p", p, low=0, high=1)
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        factor = self.rng.uniform(1 - self.contrast, 1 + self.contrast, shape, dtype=x.dtype)
        offset = self.rng.uniform(-self.brightness, self.brightness, shape, dtype=x.dtype)
        chosen = self.rng.uniform(0.0, 1.0, shape, dtype=x.dtype) < self.p
        mean = xp.mean(x, axis=tuple(range(1, x.ndim)), keepdims=True)
        return xp.where(chosen, xp.clip((x - mean) * factor + mean + offset, 0.0, 1.0), x)


class TwoViews:
    """Two independent draws of `augmentation` per image, stacked: the layout NTXentLoss expects.

    With `Trainer.fit(x, None, augment=TwoViews(...))` and NTXentLoss, fit pretrains without labels
    (SimCLR).

    Shapes: called on x (N, ...) -> (2N, ...), rows n and n + N the two views of image n.

    Args:
        augmentation: a callable on image batches, e.g. a Compose.

    Raises:
        TypeError: an augmentation that is not callable.
    """

    def __init__(self, augmentation):
        if not callable(augmentation):
            raise TypeError(f"TwoViews needs an augmentation (a callable on image batches), got {augmentation!r}")
        self.augmentation = augmentation

    def __call__(self, x):
        return backend_of(x).xp.concat([self.augmentation(x), self.augmentation(x)])


class Compose:
    """Augmentations applied one after another: Compose(RandomShift(2), RandomHorizontalFlip()).

    Args:
        *augmentations: callables on image batches, applied in this order.
    """

    def __init__(self, *augmentations):
        self.augmentations = augmentations

    def __call__(self, x):
        for augmentation in self.augmentations:
            x = augmentation(x)
        return x


def _shift_matrices(shifts, size, dtype):
    """S[n, 0, i, j] = 1 where j = i - shifts[n]: (S x)[i] = x[i - shift], zero outside."""
    xp = backend_of(shifts).xp
    positions = xp.arange(size, device=shifts.device)
    source = positions[None, :, None] - shifts[:, None, None]
    return xp.astype(source == positions[None, None, :], dtype)[:, None, :, :]


def _range(name, bounds, high=math.inf, low_open=False):
    """A (min, max) pair of reals >= 0 (> 0 with low_open, <= high), min <= max."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"{name} must be a (min, max) pair, got {bounds!r}")
    low, top = (arguments.real(name, bound, low=0, high=high, low_open=low_open) for bound in bounds)
    if low > top:
        raise ValueError(f"{name} is a (min, max) range, got {bounds!r}")
    return low, top


def _resampling_matrices(start, length, size, dtype):
    """R[n, 0, i, j]: bilinear weights of source pixel j for output pixel i, when the span
    [start_n, start_n + length_n) is resized to `size` pixels (each row sums to 1)."""
    xp = backend_of(start).xp
    positions = xp.astype(xp.arange(size, device=start.device), dtype)
    source = start[:, None] + (positions[None, :] + 0.5) * (length[:, None] / size) - 0.5
    source = xp.clip(source, 0, size - 1)  # the edge pixels are repeated, not faded to zero
    weights = 1 - xp.abs(source[:, :, None] - positions[None, None, :])
    return xp.maximum(weights, xp.zeros_like(weights))[:, None, :, :]
