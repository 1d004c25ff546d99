"""Elementwise activations and softmax as functional pairs: `f(x) -> (y, cache)` and
`f_backward(cache, grad_y) -> grad_x`. Each cache is the value its derivative is written in.

The backward of ReLU, Tanh and Sigmoid is one elementwise formula of the output y and the
incoming gradient; on CuPy each runs as one fused kernel (the CUDA source beside the portable code),
and ReLU runs as compiled loops on the CPU: each family (RELU, TANH, SIGMOID) chooses with one
selection (selection.py). GELU and SiLU cache their input x (their derivatives are written in it);
each runs forward and backward as fused kernels on CuPy, and GELU as compiled loops on the CPU too
(GELU, SILU).
"""

import math

from ..backends import (
    Elementwise,
    backend_of,
    empty,
    erf_float32,
    exp_float32,
    flat_views,
    kernel,
    parallel_range,
)
from ..checks import check_floating, check_gradient
from .selection import Family, Implementation, compiles, fuses, select_elementwise, select_fused


def relu(x):
    """y = max(x, 0), elementwise.

    Args:
        x: any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `relu_backward`, y itself.
    """
    backend = backend_of(x)
    return RELU.choose(backend, x.size).run(backend, x)


def relu_backward(y, grad_y):
    """The gradient of `relu`: dL/dx = dL/dy where y > 0, else 0 (dy/dx = 1 for x > 0, else 0).

    Args:
        y: the cache `relu` returned, its output.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    check_gradient(grad_y, y.shape, y.dtype, "relu_backward")
    backend = backend_of(y)
    return RELU.choose(backend, y.size).backward(backend, y, grad_y)


def _relu_portable(backend, x):
    y = backend.xp.maximum(x, 0)
    return y, y


def _relu_backward_portable(backend, y, grad_y):
    return grad_y * backend.xp.astype(y > 0, grad_y.dtype)


RELU_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = y > 0 ? gy : T(0)", "diynn_relu_backward")


def _relu_backward_fused(backend, y, grad_y):
    return backend.elementwise(RELU_BACKWARD)(y, grad_y)


def _relu_compiled(backend, x):
    y = empty(x.shape, x.dtype)  # C order: its flat view is itself
    backend.compiled(_relu_flat)(*flat_views(x, y))
    return y, y


def _relu_backward_compiled(backend, y, grad_y):
    grad_x = empty(grad_y.shape, grad_y.dtype)
    backend.compiled(_relu_backward_flat)(*flat_views(y, grad_y, grad_x))
    return grad_x


@kernel
def _relu_flat(x1, y1):
    """y1 = max(x1, 0) over flat arrays, in parallel (NaN stays NaN, as in xp.maximum)."""
    for i in parallel_range(x1.shape[0]):
        y1[i] = 0 if x1[i] <= 0 else x1[i]


@kernel
def _relu_backward_flat(y1, grad_y1, grad_x1):
    for i in parallel_range(y1.shape[0]):
        grad_x1[i] = grad_y1[i] if y1[i] > 0 else 0


# the cache is y itself (no cache type per implementation): the backward selects again from the
# same facts (backend, size), which gives the forward's implementation
RELU = Family(
    "relu",
    select_elementwise,
    {
        "fused": Implementation(_relu_portable, _relu_backward_fused, serves=fuses),
        "compiled": Implementation(_relu_compiled, _relu_backward_compiled, serves=compiles),
        "portable": Implementation(_relu_portable, _relu_backward_portable),
    },
)


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope x, elementwise.

    Args:
        x: any shape, floating point.
        negative_slope: the slope for x <= 0.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `leaky_relu_backward`, dy/dx
            (negative_slope where x <= 0, 1 where x > 0).
    """
    xp = backend_of(x).xp
    derivative = negative_slope + (1 - negative_slope) * xp.astype(x > 0, x.dtype)
    return x * derivative, derivative


def leaky_relu_backward(derivative, grad_y):
    """The gradient of `leaky_relu`: dL/dx = dL/dy dy/dx.

    Args:
        derivative: the cache `leaky_relu` returned, dy/dx.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of x's shape and dtype.
    """
    check_gradient(grad_y, derivative.shape, derivative.dtype, "leaky_relu_backward")
    return grad_y * derivative


def tanh(x):
    """y = tanh(x), elementwise.

    Args:
        x: any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `tanh_backward`, y itself.
    """
    backend = backend_of(x)
    return TANH.choose(backend, x.size).run(backend, x)


def _tanh_portable(backend, x):
    y = backend.xp.tanh(x)
    return y, y


TANH_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * (1 - y * y)", "diynn_tanh_backward")


def tanh_backward(y, grad_y):
    """The gradient of `tanh`: dL/dx = dL/dy (1 - y^2) (dy/dx = 1 - tanh(x)^2).

    Args:
        y: the cache `tanh` returned, its output.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    check_gradient(grad_y, y.shape, y.dtype, "tanh_backward")
    backend = backend_of(y)
    return TANH.choose(backend, y.size).backward(backend, y, grad_y)


def _tanh_backward_portable(backend, y, grad_y):
    return grad_y * (1 - y * y)


def _tanh_backward_fused(backend, y, grad_y):
    return backend.elementwise(TANH_BACKWARD)(y, grad_y)


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), elementwise, computed as (1 + tanh(x / 2)) / 2, which never overflows.

    Args:
        x: any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `sigmoid_backward`, y itself.
    """
    backend = backend_of(x)
    return SIGMOID.choose(backend, x.size).run(backend, x)


def _sigmoid_portable(backend, x):
    y = backend.xp.tanh(x / 2)  # (1 + tanh(x / 2)) / 2: never overflows
    y += 1
    y /= 2
    return y, y


SIGMOID_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * y * (1 - y)", "diynn_sigmoid_backward")


def sigmoid_backward(y, grad_y):
    """The gradient of `sigmoid`: dL/dx = dL/dy y (1 - y) (dy/dx = sigmoid(x) (1 - sigmoid(x))).

    Args:
        y: the cache `sigmoid` returned, its output.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    check_gradient(grad_y, y.shape, y.dtype, "sigmoid_backward")
    backend = backend_of(y)
    return SIGMOID.choose(backend, y.size).backward(backend, y, grad_y)


def _sigmoid_backward_portable(backend, y, grad_y):
    return grad_y * y * (1 - y)


def _sigmoid_backward_fused(backend, y, grad_y):
    return backend.elementwise(SIGMOID_BACKWARD)(y, grad_y)


TANH = Family(
    "tanh",
    select_fused,
    {
        "fused": Implementation(_tanh_portable, _tanh_backward_fused, serves=fuses),
        "portable": Implementation(_tanh_portable, _tanh_backward_portable),
    },
)
SIGMOID = Family(
    "sigmoid",
    select_fused,
    {
        "fused": Implementation(_sigmoid_portable, _sigmoid_backward_fused, serves=fuses),
        "portable": Implementation(_sigmoid_portable, _sigmoid_backward_portable),
    },
)


def softmax(x, axis=-1):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `axis` (the shift keeps exp from overflowing).

    Args:
        x: any shape, floating point.
        axis: the axis the probabilities sum to 1 along (default: the last).

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `softmax_backward`, (y, axis).
    """
    xp = backend_of(x).xp
    y = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    y /= xp.sum(y, axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(cache, grad_y):
    """The gradient of `softmax`: the vector-Jacobian product along its axis.

    Args:
        cache: the cache `softmax` returned, (y, axis).
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    # dL/dx_i = y_i (g_i - sum_j g_j y_j)
    y, axis = cache
    check_gradient(grad_y, y.shape, y.dtype, "softmax_backward")
    inner = backend_of(grad_y).xp.sum(grad_y * y, axis=axis, keepdims=True)
    return y * (grad_y - inner)


# GELU's constants: 1 / sqrt(2), 1 / sqrt(2 pi), and the tanh form's sqrt(2 / pi) and cubic coefficient
SQRT_HALF, INV_SQRT_2PI = 0.7071067811865476, 0.3989422804014327
TANH_SCALE, TANH_CUBIC = 0.7978845608028654, 0.044715
GELU_FORMS = ("none", "tanh")


def gelu(x, approximate="none"):
    """y = x Phi(x), Phi the standard normal distribution function, elementwise (PyTorch's GELU).

    Phi(x) = (1 + erf(x / sqrt(2))) / 2 exactly ("none"), or the tanh approximation
    (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2 ("tanh"). erf comes from the backend
    (`Backend.erf`: the standard has none) on the portable path, from CUDA's inside the fused
    kernels, and inside the compiled CPU kernels from the C library for float64 and from a float32
    polynomial for float32 (`backends.erf_float32`, within a few float32 roundings).

    Args:
        x: input of any shape, floating point.
        approximate: "none" or "tanh".

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `gelu_backward`, (x, approximate).

    Raises:
        ValueError: an unknown `approximate`.
        TypeError: x is not an array of a real floating dtype.
    """
    if approximate not in GELU_FORMS:
        raise ValueError(f"gelu's approximate must be one of {', '.join(GELU_FORMS)}, got {approximate!r}")
    check_floating(x, "gelu")
    backend = backend_of(x)
    return GELU.choose(backend, x.size).run(backend, x, approximate == "tanh"), (x, approximate)


def gelu_backward(cache, grad_y):
    """The gradient of `gelu` with respect to its input.

    Args:
        cache: the cache `gelu` returned, (x, approximate).
        grad_y: dL/dy, of x's shape and dtype.

    Returns:
        grad_x: dL/dx = dL/dy (Phi(x) + x phi(x)), phi the normal density (with the tanh form, the
            derivative of x times its Phi), of x's shape and dtype.
    """
    x, approximate = cache
    check_gradient(grad_y, x.shape, x.dtype, "gelu_backward")
    backend = backend_of(x)
    return GELU.choose(backend, x.size).backward(backend, x, approximate == "tanh", grad_y)


def _gelu_portable(backend, x, tanh_form):
    return x * _normal_cdf_portable(backend, x, tanh_form)


def _gelu_backward_portable(backend, x, tanh_form, grad_y):
    xp = backend.xp
    bounded = _bounded(xp, x)  # beyond 1e4 every term below has saturated: no overflow, no inf * 0
    if tanh_form:  # y = x (1 + t) / 2, t = tanh(k (x + c x^3)): dy/dx = (1 + t) / 2 + x (1 - t^2) k (1 + 3 c x^2) / 2
        t = xp.tanh(TANH_SCALE * (bounded + TANH_CUBIC * bounded * bounded * bounded))
        derivative = (1 + t) / 2 + bounded * (1 - t * t) * (TANH_SCALE / 2) * (1 + 3 * TANH_CUBIC * bounded * bounded)
    else:  # dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        derivative = _normal_cdf_portable(backend, x, False) + bounded * xp.exp(-bounded * bounded / 2) * INV_SQRT_2PI
    return grad_y * derivative


def _normal_cdf_portable(backend, x, tanh_form):
    """Phi(x), or its tanh approximation."""
    if tanh_form:
        bounded = _bounded(backend.xp, x)
        return (1 + backend.xp.tanh(TANH_SCALE * (bounded + TANH_CUBIC * bounded * bounded * bounded))) / 2
    return (1 + backend.erf(x * SQRT_HALF)) / 2


def _bounded(xp, x):
    """x clipped to [-1e4, 1e4] (NaN stays NaN): where GELU's terms have saturated."""
    return xp.clip(x, -1e4, 1e4)


def _gelu_compiled(backend, x, tanh_form):
    y = empty(x.shape, x.dtype)
    loop = _gelu_float32_flat if x.dtype == backend.xp.float32 else _gelu_flat
    flat_x, flat_y = flat_views(x, y)
    backend.compiled(loop)(flat_x, tanh_form, flat_y)
    return y


def _gelu_backward_compiled(backend, x, tanh_form, grad_y):
    grad_x = empty(x.shape, x.dtype)
    flat_x, flat_grad_y, flat_grad_x = flat_views(x, grad_y, grad_x)
    loop = _gelu_backward_float32_flat if x.dtype == backend.xp.float32 else _gelu_backward_flat
    backend.compiled(loop)(flat_x, flat_grad_y, tanh_form, flat_grad_x)
    return grad_x


@kernel
def _normal_cdf(x, tanh_form):
    """Phi(x) of one value (in float64), or its tanh approximation, written as the logistic function
    (1 + tanh(u)) / 2 = 1 / (1 + exp(-2u)): numba's exp is much faster than its tanh."""
    if tanh_form:
        return 1.0 / (1.0 + math.exp(-2.0 * TANH_SCALE * (x + TANH_CUBIC * x * x * x)))
    return 0.5 * (1.0 + math.erf(x * SQRT_HALF))


@kernel
def _gelu_flat(x1, tanh_form, y1):
    for i in parallel_range(x1.shape[0]):
        y1[i] = x1[i] * _normal_cdf(x1[i], tanh_form)


@kernel
def _gelu_backward_flat(x1, grad_y1, tanh_form, grad_x1):
    for i in parallel_range(x1.shape[0]):
        x = x1[i]
        cdf = _normal_cdf(x, tanh_form)
        if tanh_form:  # 1 - tanh(u)^2 = 4 cdf (1 - cdf)
            slope = 2.0 * x * cdf * (1.0 - cdf) * TANH_SCALE * (1.0 + 3.0 * TANH_CUBIC * x * x)
        else:
            slope = x * math.exp(-0.5 * x * x) * INV_SQRT_2PI
        grad_x1[i] = grad_y1[i] * (cdf + slope)


# float32 runs in float32 arithmetic with erf and exp as polynomials (backends/fast_math.py): the
# loops vectorise, where the C library's erf and exp, called one value at a time, kept them scalar.
# (128, 50, 256) float32, forward + backward on 2 cores: 20 -> 1.1 ms, the tanh form 11 -> 1.4 ms
# (PyTorch: 1.3 and 3.1 ms; docs/performance.md).


@kernel(contract=True)
def _normal_cdf_float32(x, tanh_form, real):
    """Phi(x) of one float32 value in float32 (`real`, the constants' type), or its tanh approximation."""
    if tanh_form:
        return real(1) / (real(1) + exp_float32(real(-2 * TANH_SCALE) * (x + real(TANH_CUBIC) * x * x * x)))
    return real(0.5) + real(0.5) * erf_float32(x * real(SQRT_HALF))


@kernel(contract=True)
def _gelu_float32_flat(x1, tanh_form, y1):
    real = x1.dtype.type  # float32: constants of the array's type keep the arithmetic in float32
    for i in parallel_range(x1.shape[0]):
        y1[i] = x1[i] * _normal_cdf_float32(x1[i], tanh_form, real)


@kernel(contract=True)
def _gelu_backward_float32_flat(x1, grad_y1, tanh_form, grad_x1):
    real = x1.dtype.type
    for i in parallel_range(x1.shape[0]):
        x = x1[i]
        if tanh_form:  # as the float64 loop's, with 1 - cdf = 1 / (1 + 1 / e), e = exp(-2u): in float32,
            # 1 - cdf rounds to a multiple of 6e-8 where cdf is near 1 (a 2e-6 error of dy/dx at x = 5)
            e = exp_float32(real(-2 * TANH_SCALE) * (x + real(TANH_CUBIC) * x * x * x))
            cdf = real(1) / (real(1) + e)
            bounded = real(1e4) if x > real(1e4) else real(-1e4) if x < real(-1e4) else x  # NaN stays NaN
            du_dx = real(TANH_SCALE) + real(3 * TANH_SCALE * TANH_CUBIC) * bounded * bounded  # no inf * 0
            slope = real(2) * cdf / (real(1) + real(1) / e) * x * du_dx
        else:
            cdf = _normal_cdf_float32(x, False, real)
            slope = x * exp_float32(real(-0.5) * x * x) * real(INV_SQRT_2PI)
        grad_x1[i] = grad_y1[i] * (cdf + slope)


_TANH_CDF = f"T(0.5) * (T(1) + tanh(T({TANH_SCALE!r}) * (x + T({TANH_CUBIC!r}) * x * x * x)))"
_ERF_CDF = f"T(0.5) * (T(1) + erf(x * T({SQRT_HALF!r})))"
GELU_FORWARD = Elementwise(
    "T x, int32 tanh_form", "T y", f"y = x * (tanh_form ? {_TANH_CDF} : {_ERF_CDF});", "diynn_gelu"
)
GELU_BACKWARD = Elementwise(
    "T x, T gy, int32 tanh_form",
    "T gx",
    f"""T derivative;
    if (tanh_form) {{
        T t = tanh(T({TANH_SCALE!r}) * (x + T({TANH_CUBIC!r}) * x * x * x));
        derivative = T(0.5) * (T(1) + t)
            + T(0.5) * x * (T(1) - t * t) * T({TANH_SCALE!r}) * (T(1) + T({3 * TANH_CUBIC!r}) * x * x);
    }} else {{
        derivative = {_ERF_CDF} + x * exp(T(-0.5) * x * x) * T({INV_SQRT_2PI!r});
    }}
    gx = gy * derivative;""",
    "diynn_gelu_backward",
)


def _gelu_fused(backend, x, tanh_form):
    return backend.elementwise(GELU_FORWARD)(x, int(tanh_form))


def _gelu_backward_fused(backend, x, tanh_form, grad_y):
    return backend.elementwise(GELU_BACKWARD)(x, grad_y, int(tanh_form))


# the cache is (x, approximate): the backward selects again from the same facts (backend, size)
GELU = Family(
    "gelu",
    select_elementwise,
    {
        "fused": Implementation(_gelu_fused, _gelu_backward_fused, serves=fuses),
        "compiled": Implementation(_gelu_compiled, _gelu_backward_compiled, serves=compiles),
        "portable": Implementation(_gelu_portable, _gelu_backward_portable),
    },
)


def silu(x):
    """y = x sigmoid(x), elementwise (SiLU, or Swish with beta = 1). Cache: x.

    Args:
        x: input of any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `silu_backward`, x.

    Raises:
        TypeError: x is not an array of a real floating dtype.
    """
    check_floating(x, "silu")
    backend = backend_of(x)
    return SILU.choose(backend, x.size).run(backend, x), x


def silu_backward(x, grad_y):
    """The gradient of `silu` with respect to its input.

    Args:
        x: the cache `silu` returned (its input).
        grad_y: dL/dy, of x's shape and dtype.

    Returns:
        grad_x: dL/dx = dL/dy s (1 + x (1 - s)), s = sigmoid(x), of x's shape and dtype.
    """
    check_gradient(grad_y, x.shape, x.dtype, "silu_backward")
    backend = backend_of(x)
    return SILU.choose(backend, x.size).backward(backend, x, grad_y)


def _silu_portable(backend, x):
    return x * _sigmoid_portable(backend, x)[0]


def _silu_backward_portable(backend, x, grad_y):
    # dy/dx = s + x s (1 - s) = s (1 + x (1 - s))
    s = _sigmoid_portable(backend, x)[0]
    return grad_y * s * (1 + x * (1 - s))


SILU_FORWARD = Elementwise("T x", "T y", "y = x / (T(1) + exp(-x))", "diynn_silu")
SILU_BACKWARD = Elementwise(
    "T x, T gy", "T gx", "T s = T(1) / (T(1) + exp(-x)); gx = gy * s * (T(1) + x * (T(1) - s))", "diynn_silu_backward"
)


def _silu_fused(backend, x):
    return backend.elementwise(SILU_FORWARD)(x)


def _silu_backward_fused(backend, x, grad_y):
    return backend.elementwise(SILU_BACKWARD)(x, grad_y)


SILU = Family(
    "silu",
    select_fused,
    {
        "fused": Implementation(_silu_fused, _silu_backward_fused, serves=fuses),
        "portable": Implementation(_silu_portable, _silu_backward_portable),
    },
)
