"""Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016): the 3x3 stride-1 convolutions
of the compiled CPU path with 2.25x fewer multiplications than im2col + one matrix product.

Each 4x4 input tile d (tiles overlap by 2) gives a 2x2 output tile:
    Y = A^T [ sum_c (G g G^T) * (B^T d B) ] A        (* elementwise; g a 3x3 filter)
The sum over channels of the 16 elementwise products is 16 matrix products,
    M[p] (O, tiles) = U[p] (O, C) @ V[p] (C, tiles),   U = G g G^T, V = B^T d B, p = 4 k + l,
and the backward is this formula's own derivative:
    dM = A dY A^T,  dU[p] = dM[p] V[p]^T,  dV[p] = U[p]^T dM[p],
    dL/dd = B dV B^T (summed where tiles overlap),  dL/dg = G^T dU G.
As on convolution.py's compiled path, each thread takes a chunk of images; it works through them a
block of images at a time, so that a block's tiles stay in the core's cache from their transform
through the 16 products (NumPy's BLAS on that thread) to the output tiles. The backward transforms
the input's tiles again instead of keeping them from the forward (its cache is x itself). The
portable im2col path stays the reference the tests compare this with.
"""

from __future__ import annotations

from ..backends import blas_gemm, chunk_bounds, kernel, kernel_threads, matmul_into, parallel_range

# F(2x2, 3x3)'s filter transform G (4, 3); B^T and A^T are written out in `_bt`, `_at` and their
# transposes `_b`, `_a` below
G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# fewer input channels than this leave the 16 products too thin to pay for the transforms
# (forward + backward, batch 128 of 28x28, 32 output channels, 2 threads: 4 channels 8.5 ms against
# im2col's 7.4, 8 channels 10.6 against 13.2)
SMALLEST_CHANNELS = 8
PAGE, CACHE_LINE = 4096, 64  # bytes
# tiles a thread works on at a time (measured for 32 -> 64 channels: the 16 products run at
# 105-110 GFLOP/s on 392-784 tiles, 89-103 on 3136, with the tiles out of the cache)
BLOCK_TILES = 512


def serves(weight_shape, stride) -> bool:
    """Whether F(2x2, 3x3) computes a convolution with this (O, C, kh, kw) weight and stride (it
    pays off from SMALLEST_CHANNELS input channels: convolution.select_conv2d)."""
    return tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1)


def conv2d(backend, x, weight, bias, padding, output_shape):
    """y (N, O, OH, OW) = the stride-1 convolution of x (N, C, H, W) with weight (O, C, 3, 3) plus
    bias (O,) or None; returns (y, saved) with what `conv2d_backward` needs (x itself: the backward
    transforms its tiles again rather than keep them)."""
    xp = backend.xp
    n, out_channels = x.shape[0], weight.shape[0]
    tiles, bounds, block, rooms = _work(xp, x, out_channels, output_shape)
    transform = xp.asarray(G, dtype=x.dtype)
    u = _filter_tiles(xp, transform, weight)
    y = xp.empty((n, out_channels, *output_shape), dtype=x.dtype)
    bias_or_zero = bias if bias is not None else xp.zeros(out_channels, dtype=x.dtype)
    forward = backend.compiled(_winograd_chunks)
    forward(blas_gemm(x.dtype), x, u, bias_or_zero, padding, tiles, bounds, block, *rooms, y)
    return y, (x, u, transform)


def conv2d_backward(backend, saved, padding, grad_y, input_grad, param_grads):
    """(dL/dx (N, C, H, W), dL/dW (O, C, 3, 3), dL/db (O,)) from dL/dy (N, O, OH, OW); None where
    not asked for."""
    xp = backend.xp
    x, u, transform = saved
    channels, out_channels = x.shape[1], u.shape[1]
    tiles, bounds, block, rooms = _work(xp, x, out_channels, grad_y.shape[2:])
    chunks = len(bounds) - 1
    grad_x = xp.empty(x.shape if input_grad else (0,) * 4, dtype=x.dtype)
    grad_u = xp.zeros((chunks if param_grads else 0, 16, out_channels, channels), dtype=x.dtype)
    grad_bias = xp.zeros((chunks if param_grads else 0, out_channels), dtype=x.dtype)
    backward = backend.compiled(_winograd_backward_chunks)
    backward(blas_gemm(x.dtype), x, grad_y, u, padding, tiles, bounds, block, *rooms, grad_x, grad_u, grad_bias)
    if not param_grads:
        return (grad_x if input_grad else None), None, None
    grad_weight = _filter_gradient(xp, transform, xp.sum(grad_u, axis=0))
    return (grad_x if input_grad else None), grad_weight, xp.sum(grad_bias, axis=0)


def _work(xp, x, out_channels, output_shape):
    """How the forward and the backward split their work: (tiles (TH, TW) per image, the chunks'
    bounds, the images per block, each thread's rooms (its padded image, its block's V or dV, its
    block's M or dM)). A block is about BLOCK_TILES tiles, so that its transformed tiles stay in the
    core's cache between the transforms and the products."""
    n, channels = x.shape[:2]
    tiles = ((output_shape[0] + 1) // 2, (output_shape[1] + 1) // 2)
    bounds, block = chunk_bounds(n, kernel_threads()), max(1, BLOCK_TILES // (tiles[0] * tiles[1]))
    chunks, width = len(bounds) - 1, block * tiles[0] * tiles[1]
    planes = _tile_planes(xp, chunks, channels, tiles, x.dtype)
    rooms = (planes, *(_tile_buffers(xp, chunks, rows, width, x.dtype) for rows in (channels, out_channels)))
    return tiles, bounds, block, rooms


def _filter_tiles(xp, transform, weight):
    """U = G g G^T of every (O, C) filter, as (16, O, C), row-major (the products' operands)."""
    u = xp.empty((4, 4, *weight.shape[:2]), dtype=weight.dtype)
    u[...] = xp.permute_dims(transform @ weight @ transform.T, (2, 3, 0, 1))  # (O, C, 4, 4) -> (4, 4, O, C)
    return xp.reshape(u, (16, *weight.shape[:2]))


def _filter_gradient(xp, transform, grad_u):
    """dL/dg = G^T dU G: (16, O, C) -> (O, C, 3, 3)."""
    grad_u = xp.permute_dims(xp.reshape(grad_u, (4, 4, *grad_u.shape[1:])), (2, 3, 0, 1))
    return transform.T @ grad_u @ transform


def _tile_buffers(xp, chunks, rows, width, dtype):
    """Per-chunk room for 16 transformed planes (rows, width): a (T, 16, rows, width) view whose
    planes lie a 4 KiB multiple plus one cache line apart. The tile kernels write all 16 planes at
    once; planes a multiple of 4 KiB apart would fall into the same few cache sets and evict each
    other (measured: the gradient's tiles of 64 images took 6.9 ms instead of 0.8)."""
    itemsize = xp.finfo(dtype).bits // 8
    plane = -(-rows * width * itemsize // PAGE) * PAGE + CACHE_LINE
    flat = xp.empty((chunks, 16, plane // itemsize), dtype=dtype)
    return xp.reshape(flat[:, :, : rows * width], (chunks, 16, rows, width))


def _tile_planes(xp, chunks, channels, tiles, dtype):
    """One zero-padded image (C, 2 TH + 2, 2 TW + 2) per chunk: every tile lies inside it."""
    return xp.empty((chunks, channels, 2 * tiles[0] + 2, 2 * tiles[1] + 2), dtype=dtype)


# The four 1-D transforms, each applied along the columns of a tile and then along its rows.


@kernel
def _bt(d0, d1, d2, d3):
    """B^T d."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@kernel
def _b(v0, v1, v2, v3):
    """B v, the adjoint of `_bt`."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@kernel
def _at(m0, m1, m2, m3):
    """A^T m."""
    return m0 + m1 + m2, m1 - m2 - m3


@kernel
def _a(y0, y1):
    """A y, the adjoint of `_at`."""
    return y0, y0 + y1, y0 - y1, -y1


@kernel
def _input_tiles(x, n0, n1, padding, tiles, plane, v):
    """v (16, C, (n1 - n0) TH TW) = B^T d B of every 4x4 tile d of images n0..n1 of x (N, C, H, W),
    each image first copied into plane (C, 2 TH + 2, 2 TW + 2) with the padding as its zero border."""
    (ph, pw), (th, tw) = padding, tiles
    plane[:] = 0
    for i in range(n1 - n0):
        plane[:, ph : ph + x.shape[2], pw : pw + x.shape[3]] = x[n0 + i]
        for c in range(x.shape[1]):
            for a in range(th):
                d, first = plane[c, 2 * a : 2 * a + 4], (i * th + a) * tw
                for t in range(first, first + tw):  # the tiles of a row: neighbours in v
                    s = 2 * (t - first)
                    c0 = _bt(d[0, s], d[1, s], d[2, s], d[3, s])  # the columns of B^T d
                    c1 = _bt(d[0, s + 1], d[1, s + 1], d[2, s + 1], d[3, s + 1])
                    c2 = _bt(d[0, s + 2], d[1, s + 2], d[2, s + 2], d[3, s + 2])
                    c3 = _bt(d[0, s + 3], d[1, s + 3], d[2, s + 3], d[3, s + 3])
                    v[0, c, t], v[1, c, t], v[2, c, t], v[3, c, t] = _bt(c0[0], c1[0], c2[0], c3[0])
                    v[4, c, t], v[5, c, t], v[6, c, t], v[7, c, t] = _bt(c0[1], c1[1], c2[1], c3[1])
                    v[8, c, t], v[9, c, t], v[10, c, t], v[11, c, t] = _bt(c0[2], c1[2], c2[2], c3[2])
                    v[12, c, t], v[13, c, t], v[14, c, t], v[15, c, t] = _bt(c0[3], c1[3], c2[3], c3[3])


@kernel
def _output_tiles(m, bias, n0, n1, tiles, y):
    """Images n0..n1 of y (N, O, OH, OW) = A^T M A + bias (O,), from m (16, O, (n1 - n0) TH TW);
    the last tiles' rows and columns beyond OH, OW are dropped."""
    th, tw = tiles
    oh, ow = y.shape[2], y.shape[3]
    for i in range(n1 - n0):
        for o in range(y.shape[1]):
            image = y[n0 + i, o]
            for a in range(th):
                first, r = (i * th + a) * tw, 2 * a
                for t in range(first, first + tw):
                    q = 2 * (t - first)
                    c0 = _at(m[0, o, t], m[4, o, t], m[8, o, t], m[12, o, t])  # the columns of A^T M
                    c1 = _at(m[1, o, t], m[5, o, t], m[9, o, t], m[13, o, t])
                    c2 = _at(m[2, o, t], m[6, o, t], m[10, o, t], m[14, o, t])
                    c3 = _at(m[3, o, t], m[7, o, t], m[11, o, t], m[15, o, t])
                    y00, y01 = _at(c0[0], c1[0], c2[0], c3[0])
                    y10, y11 = _at(c0[1], c1[1], c2[1], c3[1])
                    image[r, q] = y00 + bias[o]
                    if q + 1 < ow:
                        image[r, q + 1] = y01 + bias[o]
                    if r + 1 < oh:
                        image[r + 1, q] = y10 + bias[o]
                        if q + 1 < ow:
                            image[r + 1, q + 1] = y11 + bias[o]


@kernel
def _gradient_tiles(grad_y, n0, n1, tiles, dm):
    """dm (16, O, (n1 - n0) TH TW) = A dY A^T of every 2x2 tile dY of images n0..n1 of grad_y
    (N, O, OH, OW), zero beyond OH, OW."""
    th, tw = tiles
    oh, ow = grad_y.shape[2], grad_y.shape[3]
    zero = grad_y.dtype.type(0)
    for i in range(n1 - n0):
        for o in range(grad_y.shape[1]):
            g = grad_y[n0 + i, o]
            for a in range(th):
                first, r = (i * th + a) * tw, 2 * a
                for t in range(first, first + tw):
                    q = 2 * (t - first)
                    g00, g01 = g[r, q], g[r, q + 1] if q + 1 < ow else zero
                    g10 = g[r + 1, q] if r + 1 < oh else zero
                    g11 = g[r + 1, q + 1] if r + 1 < oh and q + 1 < ow else zero
                    c0, c1 = _a(g00, g10), _a(g01, g11)  # the columns of A dY
                    dm[0, o, t], dm[1, o, t], dm[2, o, t], dm[3, o, t] = _a(c0[0], c1[0])
                    dm[4, o, t], dm[5, o, t], dm[6, o, t], dm[7, o, t] = _a(c0[1], c1[1])
                    dm[8, o, t], dm[9, o, t], dm[10, o, t], dm[11, o, t] = _a(c0[2], c1[2])
                    dm[12, o, t], dm[13, o, t], dm[14, o, t], dm[15, o, t] = _a(c0[3], c1[3])


@kernel
def _input_gradient_tiles(dv, n0, n1, padding, tiles, plane, grad_x):
    """Images n0..n1 of grad_x (N, C, H, W) = the sums of B dV B^T over the tiles that cover each
    pixel, from dv (16, C, (n1 - n0) TH TW), summed in plane (C, 2 TH + 2, 2 TW + 2) and cropped."""
    (ph, pw), (th, tw) = padding, tiles
    for i in range(n1 - n0):
        plane[:] = 0
        for c in range(grad_x.shape[1]):
            for a in range(th):
                target, first = plane[c, 2 * a : 2 * a + 4], (i * th + a) * tw
                for t in range(first, first + tw):
                    s = 2 * (t - first)
                    c0 = _b(dv[0, c, t], dv[4, c, t], dv[8, c, t], dv[12, c, t])  # the columns of B dV
                    c1 = _b(dv[1, c, t], dv[5, c, t], dv[9, c, t], dv[13, c, t])
                    c2 = _b(dv[2, c, t], dv[6, c, t], dv[10, c, t], dv[14, c, t])
                    c3 = _b(dv[3, c, t], dv[7, c, t], dv[11, c, t], dv[15, c, t])
                    for r in range(4):  # row r of (B dV) B^T, added where the tile lies
                        d0, d1, d2, d3 = _b(c0[r], c1[r], c2[r], c3[r])
                        target[r, s] += d0
                        target[r, s + 1] += d1
                        target[r, s + 2] += d2
                        target[r, s + 3] += d3
        grad_x[n0 + i] = plane[:, ph : ph + grad_x.shape[2], pw : pw + grad_x.shape[3]]


@kernel
def _winograd_chunks(gemm, x, u, bias, padding, tiles, bounds, block, planes, transformed, products, y):
    """y (N, O, OH, OW) = conv of x (N, C, H, W) with the filters' tiles u (16, O, C) plus bias (O,).
    Each thread takes a chunk of images, `block` images at a time: their V in its transformed
    (16, C, block tiles), their M in its products (16, O, block tiles)."""
    for t in parallel_range(len(bounds) - 1):
        for n0 in range(bounds[t], bounds[t + 1], block):
            n1 = min(n0 + block, bounds[t + 1])
            width = (n1 - n0) * tiles[0] * tiles[1]
            v, m = transformed[t, :, :, :width], products[t, :, :, :width]
            _input_tiles(x, n0, n1, padding, tiles, planes[t], v)
            for p in range(16):
                matmul_into(gemm, u[p], v[p], m[p], False)
            _output_tiles(m, bias, n0, n1, tiles, y)


@kernel
def _winograd_backward_chunks(
    gemm, x, grad_y, u, padding, tiles, bounds, block, planes, transformed, grad_products, grad_x, grad_u, grad_bias
):
    """Where the arrays have room, dL/dx (grad_x (N, C, H, W)) and each chunk's dL/dU and dL/db
    (grad_u (T, 16, O, C), grad_bias (T, O), zeros on entry) from dL/dy (N, O, OH, OW), the input x
    and the filters' tiles u; each thread works `block` images at a time, their dM in its
    `grad_products`, their V (for dL/dU) and then dV (for dL/dx) in its `transformed`."""
    for t in parallel_range(len(bounds) - 1):
        for n0 in range(bounds[t], bounds[t + 1], block):
            n1 = min(n0 + block, bounds[t + 1])
            width = (n1 - n0) * tiles[0] * tiles[1]
            dm, v = grad_products[t, :, :, :width], transformed[t, :, :, :width]
            _gradient_tiles(grad_y, n0, n1, tiles, dm)
            if grad_u.shape[0] > 0:
                _input_tiles(x, n0, n1, padding, tiles, planes[t], v)
                for p in range(16):
                    matmul_into(gemm, dm[p], v[p].T, grad_u[t, p], True)
                for o in range(u.shape[1]):  # dM[1, 1] = (1 1) dY (1 1)^T, the sum of a tile's dY
                    grad_bias[t, o] += dm[5, o].sum()
            if grad_x.shape[0] > 0:  # v is free again: it takes dV
                for p in range(16):
                    matmul_into(gemm, u[p].T, dm[p], v[p], False)
                _input_gradient_tiles(v, n0, n1, padding, tiles, planes[t], grad_x)
