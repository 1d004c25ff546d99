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


def to_phases(x, step: tuple[int, int], padding: tuple[int, int], size: tuple[int, int]):
    """(N, C, H, W) -> (N sh sw, C, h, w), size = (h, w): the interleaved sub-images of x padded with
    zeros, sub-image (a, b) of image n (batch entry (n sh + a) sw + b) holding the padded image's rows
    a, a + sh, ... and columns b, b + sw, ... (zeros past its end)."""
    xp = backend_of(x).xp
    (n, channels, height, width), (sh, sw) = x.shape, step
    split = xp.zeros((n, sh, sw, channels, *size), dtype=x.dtype, device=x.device)
    for a, (rows, sub_rows) in enumerate(_phase_slices(height, padding[0], sh)):
        for b, (columns, sub_columns) in enumerate(_phase_slices(width, padding[1], sw)):
            split[:, a, b, :, sub_rows, sub_columns] = x[:, :, rows, columns]
    return xp.reshape(split, (n * sh * sw, channels, *size))


def from_phases(x, step: tuple[int, int], padding: tuple[int, int], shape: tuple):
    """The adjoint of `to_phases` (N sh sw, C, h, w) -> shape (N, C, H, W): each entry of the
    image read back from its sub-image, the padding dropped."""
    xp = backend_of(x).xp
    sh, sw = step
    split = xp.reshape(x, (shape[0], sh, sw, *x.shape[1:]))
    image = xp.empty(shape, dtype=x.dtype, device=x.device)
    for a, (rows, sub_rows) in enumerate(_phase_slices(shape[2], padding[0], sh)):
        for b, (columns, sub_columns) in enumerate(_phase_slices(shape[3], padding[1], sw)):
            image[:, :, rows, columns] = split[:, a, b, :, sub_rows, sub_columns]
    return image


def _phase_slices(size: int, padding: int, step: int):
    """Per phase a: (the image's indices i = step u + a - padding, 0 <= i < size; their u)."""
    slices = []
    for a in range(step):
        first = -((a - padding) // step)  # the first u with step u + a - padding >= 0
        start = step * first + a - padding
        count = len(range(start, size, step))
        slices.append((slice(min(start, size), size, step), slice(first, first + count)))  # in range: strict APIs
    return slices
