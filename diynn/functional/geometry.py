"""Geometry shared by convolutions and pooling: output sizes, padding and cropping
of (A, B, H, W) image batches, and the channel-major layout the convolutions compute in."""

from __future__ import annotations

from ..backends import backend_of


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pad2d(x, padding: tuple[int, int], value=0.0):
    """Pad the last two axes of a 4-D array: (A, B, H, W) -> (A, B, H + 2 ph, W + 2 pw), border `value`."""
    ph, pw = padding
    if not (ph or pw):
        return x
    xp = backend_of(x).xp
    a, b, height, width = x.shape
    padded = xp.full((a, b, height + 2 * ph, width + 2 * pw), value, dtype=x.dtype, device=x.device)
    padded[:, :, ph : ph + height, pw : pw + width] = x
    return padded


def pad_channel_major(x, padding: tuple[int, int], value=0.0):
    """(N, C, H, W) -> (C, N, H + 2 ph, W + 2 pw), the border filled with `value`."""
    return pad2d(backend_of(x).xp.permute_dims(x, (1, 0, 2, 3)), padding, value)


def to_batch_major(x):
    """(C, N, H, W) -> (N, C, H, W) in contiguous memory: one transposing copy, so that the
    following elementwise layers and the next backward run on contiguous arrays."""
    xp = backend_of(x).xp
    channels, n, height, width = x.shape
    flat = xp.reshape(xp.permute_dims(x, (1, 0, 2, 3)), (n, channels * height * width))
    return xp.reshape(flat, (n, channels, height, width))


def crop(x, padding: tuple[int, int]):
    """Remove a border of `padding` from the last two axes."""
    ph, pw = padding
    return x[..., ph : x.shape[-2] - ph, pw : x.shape[-1] - pw]
