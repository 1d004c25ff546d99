"""Data augmentation of image batches (N, C, H, W) on the active backend, for `Trainer.fit(augment=...)`."""

from __future__ import annotations

from backends import backend_of

from .init import as_generator, following


class RandomShift:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], filling with zeros.

    (The same as a random crop of the image padded by max_shift.) Written as two batched products
    with one-hot shift matrices, y = S_dy x S_dx^T, so it runs unchanged on every backend.
    """

    def __init__(self, max_shift: int = 2, rng=None):
        self.max_shift = max_shift
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


class RandomHorizontalFlip:
    """Mirror each image left-right with probability p (for data without a handedness, e.g. clothes)."""

    def __init__(self, p: float = 0.5, rng=None):
        self.p = p
        self.rng = as_generator(rng)

    def __call__(self, x):
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        flip = self.rng.uniform(0.0, 1.0, (x.shape[0],), dtype=x.dtype) < self.p
        return xp.where(flip[:, None, None, None], xp.flip(x, axis=3), x)


class Compose:
    """Augmentations applied one after another: Compose(RandomShift(2), RandomHorizontalFlip())."""

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
