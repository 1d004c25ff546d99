"""Every op family's implementations against its portable reference: each implementation that can
compute a case on this host (and backend) is forced in turn, forward and every gradient compared
in float64. A family without a case here fails `test_every_family_has_a_case`."""

import numpy as np
import pytest

import diynn
from diynn import functional as F
from diynn import optim
from diynn.functional import activations, convolution, losses
from diynn.functional.selection import FAMILIES, ImplementationUnavailable, forced


def _arrays(backend, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [backend.asarray(rng.standard_normal(shape)) for shape in shapes]


def conv2d_cases(backend):
    """(facts for `serving`, run() -> outputs): a Winograd geometry, a one-channel strided one, three
    dilated ones (the sub-images' plain convolutions by compiled im2col, then Winograd, where the host
    has compiled kernels; a tiny image with padding and dilation unlike per axis, some sub-images
    without outputs), a strided dilated one, a depthwise one (two outputs per channel, strided and
    dilated). Stride, padding and dilation: an int or (rows, columns)."""
    geometries = [(3, 8, 7, 6, 4, 3, 1, 1, 1, 1), (2, 1, 9, 8, 3, 3, 2, 0, 1, 1), (2, 3, 9, 8, 4, 3, 1, 2, 2, 1)]
    dilated = [
        (2, 8, 10, 7, 4, 3, 1, 3, 3, 1),
        (1, 2, 4, 3, 2, 3, 1, (6, 4), (6, 3), 1),
        (2, 3, 9, 8, 4, 3, 2, 1, 2, 1),
    ]
    for n, c, h, w, o, k, *geometry, g in [*geometries, *dilated, (2, 3, 9, 8, 6, 3, 2, 1, 2, 3)]:
        s, p, d = (value if isinstance(value, tuple) else (value, value) for value in geometry)
        x, weight, bias = _arrays(backend, (n, c, h, w), (o, c // g, k, k), (o,))
        oh, ow = ((size + 2 * p[a] - d[a] * (k - 1) - 1) // s[a] + 1 for a, size in enumerate((h, w)))
        (grad,) = _arrays(backend, (n, o, oh, ow), seed=1)

        def run(x=x, weight=weight, bias=bias, s=s, p=p, d=d, g=g, grad=grad):
            y, cache = F.conv2d(x, weight, bias, s, p, dilation=d, groups=g)
            return (y, *F.conv2d_backward(cache, grad))

        yield (backend, x, weight, s, p, (oh, ow), d, g), run


def conv_transpose2d_cases(backend):
    x, weight, bias = _arrays(backend, (3, 4, 5, 6), (4, 2, 3, 3), (2,))
    (grad,) = _arrays(backend, (3, 2, 10, 12), seed=1)

    def run():
        y, cache = F.conv_transpose2d(x, weight, bias, 2, 1, 1)
        return (y, *F.conv_transpose2d_backward(cache, grad))

    yield (backend, x, weight, (2, 2), (1, 1), grad.shape), run


def max_pool2d_cases(backend):
    """Two geometries, then windows holding one NaN and two (the gradient goes to the last NaN)."""
    for kernel, stride, padding, nans in [(2, 2, 0, []), (3, 2, 1, []), (2, 2, 0, [(0, 0), (1, 0), (4, 5)])]:
        (x,) = _arrays(backend, (2, 3, 9, 8))
        for row, column in nans:
            x[1, 2, row, column] = float("nan")
        y = F.max_pool2d(x, kernel, stride, padding)[0]
        (grad,) = _arrays(backend, y.shape, seed=1)

        def run(x=x, kernel=kernel, stride=stride, padding=padding, grad=grad):
            y, cache = F.max_pool2d(x, kernel, stride, padding)
            return y, F.max_pool2d_backward(cache, grad)

        yield (backend,), run


def batch_norm_cases(backend):
    for training in (True, False):
        x, weight, bias, grad = _arrays(backend, (4, 3, 5, 5), (3,), (3,), (4, 3, 5, 5))

        def run(x=x, weight=weight, bias=bias, grad=grad, training=training):
            mean, var = backend.xp.zeros(3, dtype=x.dtype), backend.xp.ones(3, dtype=x.dtype)
            y, cache = F.batch_norm(x, weight, bias, mean, var, training=training)
            return (y, mean, var, *F.batch_norm_backward(cache, grad))

        yield (backend,), run


def linear_cases(backend):
    for rows, outputs in [(7, 3), (3, 8)]:  # the compiled products split by rows, and by columns
        x, weight, bias, grad = _arrays(backend, (rows, 5), (outputs, 5), (outputs,), (rows, outputs))

        def run(x=x, weight=weight, bias=bias, grad=grad):
            y, cache = F.linear(x, weight, bias)
            return (y, *F.linear_backward(cache, grad))

        yield (backend, rows * 5 * outputs), run


def activation_cases(name):
    def cases(backend):
        for shape in [(4, 5), (64, 300)]:  # small, and large enough for a parallel launch
            x, grad = _arrays(backend, shape, shape)

            def run(x=x, grad=grad):
                y, cache = getattr(activations, name)(x)
                return y, getattr(activations, f"{name}_backward")(cache, grad)

            yield (backend, x.size), run

    return cases


def layer_norm_cases(backend):
    """Gamma and beta over one axis, none over two (large enough for the compiled rows to split)."""
    for shape, normalized, affine in [((4, 3, 5), (5,), True), ((40, 30, 4, 6), (4, 6), False)]:
        x, weight, bias, grad = _arrays(backend, shape, normalized, normalized, shape)
        weight, bias = (weight, bias) if affine else (None, None)

        def run(x=x, normalized=normalized, weight=weight, bias=bias, grad=grad):
            y, cache = F.layer_norm(x, normalized, weight, bias)
            return (y, *F.layer_norm_backward(cache, grad))

        yield (backend,), run


def gelu_cases(backend):
    for shape in [(4, 5), (64, 300)]:  # small, and large enough for a parallel launch
        for approximate in ("none", "tanh"):
            x, grad = _arrays(backend, shape, shape)

            def run(x=x, grad=grad, approximate=approximate):
                y, cache = F.gelu(3 * x, approximate)
                return y, F.gelu_backward(cache, grad)

            yield (backend, x.size), run


def softmax_cross_entropy_cases(backend):
    (logits,) = _arrays(backend, (6, 4))
    labels = backend.asarray(np.array([0, 3, 1, 2, 2, 0]))
    yield (backend, logits.size), lambda: losses.softmax_cross_entropy(logits, labels)


def optimiser_cases(make):
    def cases(backend):
        for shape in [(3, 4), (200, 100)]:  # small, and large enough for a parallel launch
            start, grad = _arrays(backend, shape, shape)

            def run(start=start, grad=grad):
                parameter = diynn.Parameter(backend.xp.asarray(start, copy=True))
                optimizer = make([parameter])
                for _ in range(3):
                    parameter.grad = grad
                    optimizer.step()
                state = optimizer.state[id(parameter)]
                return [
                    parameter.data,
                    *(v for k, v in state.items() if hasattr(v, "shape") and k not in optim.SCRATCH),
                ]

            yield (backend, start, start, start), run

    return cases


CASES = {
    "conv2d": conv2d_cases,
    "conv_transpose2d": conv_transpose2d_cases,
    "max_pool2d": max_pool2d_cases,
    "batch_norm": batch_norm_cases,
    "layer_norm": layer_norm_cases,
    "linear": linear_cases,
    "relu": activation_cases("relu"),
    "tanh": activation_cases("tanh"),
    "sigmoid": activation_cases("sigmoid"),
    "gelu": gelu_cases,
    "silu": activation_cases("silu"),
    "softmax_cross_entropy": softmax_cross_entropy_cases,
    "sgd": optimiser_cases(lambda p: optim.SGD(p, lr=0.1)),
    "sgd_momentum": optimiser_cases(lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "adam": optimiser_cases(lambda p: optim.Adam(p, lr=0.1)),
}
# the portable reference of each family
REFERENCE = {"conv2d": "channel_major", "conv_transpose2d": "channel_major"}
GENERAL = {"conv2d": "grouped"}  # the reference where the usual one does not compute a case (dilation, groups)


def test_every_family_has_a_case():
    assert set(FAMILIES) == set(CASES)


@pytest.mark.parametrize("family", sorted(CASES))
def test_every_implementation_that_serves_equals_the_portable_one(backend, family):
    checked, references = set(), set()
    for facts, run in CASES[family](backend):
        serving = FAMILIES[family].serving(*facts)
        reference = REFERENCE.get(family, "portable")
        reference = reference if reference in serving else GENERAL[family]
        references.add(reference)
        with forced(family, reference):
            expected = run()
        for name in serving:
            with forced(family, name):
                actual = run()
            for a, b in zip(actual, expected, strict=True):
                if b is None:
                    assert a is None, name
                    continue
                a, b = backend.to_numpy(a), backend.to_numpy(b)
                assert a.shape == b.shape and a.dtype == b.dtype == np.float64, name
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11, err_msg=f"{family}: {name}")
            checked.add(name)
    assert references <= checked


def test_the_implementations_that_serve_here_are_the_expected_ones():
    numpy = diynn.backends.get("numpy")
    x, weight = _arrays(numpy, (2, 8, 6, 6), (4, 8, 3, 3))
    facts = (numpy, x, weight, (1, 1), (1, 1), (6, 6), (1, 1), 1)
    before = diynn.kernels()
    try:
        diynn.set_kernels("compiled")
        assert convolution.CONV2D.serving(*facts) == ["winograd", "compiled", "channel_major", "grouped"]
        assert convolution.CONV2D.select(*facts) == "winograd"
        diynn.set_kernels("portable")
        assert convolution.CONV2D.serving(*facts) == ["channel_major", "grouped"]
        one_channel = (numpy, x[:, :1], weight[:, :1], (1, 1), (1, 1), (6, 6), (1, 1), 1)
        assert convolution.CONV2D.select(*one_channel) == "one_channel"
        dilated = (numpy, x, weight, (1, 1), (2, 2), (6, 6), (2, 2), 1)
        assert convolution.CONV2D.select(*dilated) == "phases"
        diynn.set_kernels("compiled")
        assert convolution.CONV2D.serving(*dilated) == ["compiled", "phases", "grouped"]
        assert convolution.CONV2D.select(*dilated) == "phases"
        depthwise = (numpy, x, weight[:, :1], (2, 2), (1, 1), (3, 3), (1, 1), 8)
        assert convolution.CONV2D.select(*depthwise) == "depthwise"
        strided = (numpy, x, weight[:, :1], (3, 3), (1, 1), (2, 2), (1, 1), 8)  # s_h s_w times the work: no
        assert convolution.CONV2D.select(*strided) == "grouped"
    finally:
        diynn.set_kernels(before)


def test_forcing_names_what_is_wrong():
    with pytest.raises(ValueError, match="unknown op family 'conv3d'; the families are: adam, batch_norm"):
        with forced("conv3d", "portable"):
            pass
    with pytest.raises(ValueError, match="conv2d has no implementation 'fft'; it has: cudnn, winograd"):
        with forced("conv2d", "fft"):
            pass
    x = np.ones((1, 1, 5, 5))
    with forced("conv2d", "cudnn"):
        with pytest.raises(ImplementationUnavailable, match="'cudnn' was forced but cannot compute this call"):
            F.conv2d(x, np.ones((1, 1, 3, 3)))


def test_a_backward_refuses_a_cache_of_another_op():
    y, cache = F.max_pool2d(np.ones((1, 1, 4, 4)), 2)
    with pytest.raises(TypeError, match="conv2d's backward expects a cache made by conv2d, got"):
        F.conv2d_backward(cache, np.ones((1, 1, 2, 2)))
